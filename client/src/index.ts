export { RelayClient, parseRetryAfter } from "./client.js";
export type { CallOptions, ListOptions, RelayClientOptions, RetryOptions, SendOptions, WaitOptions } from "./client.js";
export {
  RELAY_ERROR_CODES,
  RelayApiError,
  RelayHttpError,
  RelayNetworkError,
  RelayTimeoutError,
  isRelayErrorCode,
  type RelayErrorCode,
} from "./errors.js";
export { FINAL_STATES, MESSAGE_STATES } from "./types.js";
export type {
  Address,
  MessagePage,
  MessageState,
  MessageStatus,
  RecipientState,
  RecipientStatus,
  SendMessage,
  SendResult,
  Suppression,
} from "./types.js";
