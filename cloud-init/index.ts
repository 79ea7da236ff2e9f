// Pure renderers for everything the mail-relay host gets. No @pulumi/* imports: infra/ calls these inside apply().
export * from "./types";
export * from "./release";
export * from "./paths";
export * from "./validate";
export * from "./postfix";
export * from "./postfix-master";
export * from "./opendkim";
export * from "./outbound-tls";
export * from "./systemd";
export * from "./host-hardening";
export * from "./relay-env";
export * from "./user-data";
export * from "./host-files";
export * from "./cloudflared";
export * from "./deploy-scripts";
