// Postfix's maillog_file: who may read it and how it is rotated without losing the relay's read position.
import { POSTFIX_LOG, POSTFIX_LOG_DIR, RELAY_USER } from "./paths";

/**
 * /etc/logrotate.d/mail-relay-postfix. `create` gives the new file the relay's group (Postfix 3.7's postlogd would
 * create it root 0600); delaycompress keeps postfix.log.1 plain, so the tracker finishes it by inode after the
 * rename; `postfix reload` makes postlogd open the new file (what `postfix logrotate` does).
 */
export function renderPostfixLogrotate(): string {
  return [
    "# Rendered by cloud-init/postfix-log.ts.",
    `${POSTFIX_LOG} {`,
    "  weekly",
    "  rotate 8",
    "  compress",
    "  delaycompress",
    "  missingok",
    "  notifempty",
    `  create 0640 root ${RELAY_USER}`,
    "  postrotate",
    "    /usr/sbin/postfix reload >/dev/null 2>&1 || true",
    "  endscript",
    "}",
    "",
  ].join("\n");
}

/** Shell lines for the deploy step: the log exists with the relay's group before Postfix (postlogd) first opens it. */
export function postfixLogSetupLines(): string[] {
  return [
    `# ${POSTFIX_LOG}: the relay reads it (group ${RELAY_USER}, nothing more); ` +
      `postlogd keeps the mode of an existing file.`,
    `mkdir -p -- "$root${POSTFIX_LOG_DIR}"`,
    `chown root:${RELAY_USER} "$root${POSTFIX_LOG_DIR}"`,
    `chmod 0750 "$root${POSTFIX_LOG_DIR}"`,
    `[ -e "$root${POSTFIX_LOG}" ] || : > "$root${POSTFIX_LOG}"`,
    `chown root:${RELAY_USER} "$root${POSTFIX_LOG}"`,
    `chmod 0640 "$root${POSTFIX_LOG}"`,
  ];
}
