// The policy pack: `pulumi preview --policy-pack infra/policy` / `pulumi up --policy-pack infra/policy`.
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies";

new PolicyPack("mail-relay-policies", { policies });
