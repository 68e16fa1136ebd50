/**
 * metav1.Condition helpers (after apimachinery's meta.SetStatusCondition), and a policy chain in
 * the style of cert-manager's readiness checks. All pure: they return new arrays and never modify
 * their arguments, so a status can be compared with the one it came from.
 */
import type { Condition } from '../api/index.js';

/** What a controller says about one aspect; {@link setCondition} adds the bookkeeping. */
export interface ConditionUpdate {
  readonly type: string;
  readonly status: Condition['status'];
  readonly reason: string;
  readonly message: string;
}

/** metav1.Condition's limits, as the CRDs' schemas enforce them. */
export const CONDITION_REASON_PATTERN = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;
export const CONDITION_REASON_MAX_LENGTH = 1024;
export const CONDITION_MESSAGE_MAX_LENGTH = 32_768;
export const CONDITION_TYPE_PATTERN =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/;
export const CONDITION_TYPE_MAX_LENGTH = 316;

const TRUNCATED = '…';

/** Whether the API server accepts `reason` as a condition reason. */
export function isValidConditionReason(reason: string): boolean {
  return reason.length <= CONDITION_REASON_MAX_LENGTH && CONDITION_REASON_PATTERN.test(reason);
}

/** Whether the API server accepts `type` as a condition type. */
export function isValidConditionType(type: string): boolean {
  return type.length <= CONDITION_TYPE_MAX_LENGTH && CONDITION_TYPE_PATTERN.test(type);
}

/**
 * `message` cut to the API server's 32768 characters, ending in `…` when cut. Messages often quote
 * logs or errors of unbounded length; a status write must not fail because of one.
 */
export function truncateConditionMessage(message: string): string {
  if (message.length <= CONDITION_MESSAGE_MAX_LENGTH) return message;
  let end = CONDITION_MESSAGE_MAX_LENGTH - TRUNCATED.length;
  // Do not split a surrogate pair.
  const last = message.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return message.slice(0, end) + TRUNCATED;
}

/**
 * metav1.Time: RFC 3339 in UTC with whole seconds, as the API server writes it back. Milliseconds
 * would make every stored condition differ from a freshly computed one.
 */
export function conditionTime(now: Date): string {
  return now.toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * The conditions with `update` set: a condition of a new type is appended; one of an existing
 * type is replaced in place, keeping its lastTransitionTime unless the status changes. Reason,
 * message and observedGeneration always take the new values (an undefined observedGeneration
 * removes it). Throws on a type or reason that the API server would reject (programming errors);
 * truncates a long message.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  update: ConditionUpdate,
  observedGeneration: number | undefined,
  now: Date,
): Condition[] {
  if (!isValidConditionType(update.type))
    throw new Error(`invalid condition type ${JSON.stringify(update.type)}`);
  if (!isValidConditionReason(update.reason))
    throw new Error(
      `invalid condition reason ${JSON.stringify(update.reason)} for ${update.type}: it must match ${String(CONDITION_REASON_PATTERN)}`,
    );
  const existing = conditions ?? [];
  const previous = existing.find((condition) => condition.type === update.type);
  const next: Condition = {
    type: update.type,
    status: update.status,
    ...(observedGeneration === undefined ? {} : { observedGeneration }),
    lastTransitionTime:
      previous && previous.status === update.status
        ? previous.lastTransitionTime
        : conditionTime(now),
    reason: update.reason,
    message: truncateConditionMessage(update.message),
  };
  return previous
    ? existing.map((condition) => (condition === previous ? next : condition))
    : [...existing, next];
}

/** The condition of this type, or undefined. */
export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((condition) => condition.type === type);
}

/** Whether a condition of this type exists with status True. */
export function isConditionTrue(
  conditions: readonly Condition[] | undefined,
  type: string,
): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

/** Whether a condition of this type exists with status False (Unknown and missing are neither). */
export function isConditionFalse(
  conditions: readonly Condition[] | undefined,
  type: string,
): boolean {
  return findCondition(conditions, type)?.status === 'False';
}

/** The conditions without the one of this type. */
export function removeCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition[] {
  return (conditions ?? []).filter((condition) => condition.type !== type);
}

/** The outcome of one policy check, ready to become a condition's reason and message. */
export interface PolicyResult {
  readonly ok: boolean;
  readonly reason: string;
  readonly message: string;
}

/**
 * One small, pure check, in the style of cert-manager's policy chain: a failing result
 * (`ok: false`) says what is wrong; `undefined` (or an ok result) lets the next check run.
 */
export type PolicyCheck<I> = (input: I) => PolicyResult | undefined;

/** The result of {@link evaluatePolicies} when every check passes, unless told otherwise. */
export const ALL_POLICIES_PASSED: PolicyResult = {
  ok: true,
  reason: 'AllChecksPassed',
  message: 'all checks passed',
};

/**
 * Runs `checks` in order and returns the first failing result, or `passed` if none fails. Order
 * the checks from the most fundamental (a missing reference) to the most specific, so that the
 * reported reason is the one to fix first.
 */
export function evaluatePolicies<I>(
  checks: readonly PolicyCheck<I>[],
  input: I,
  passed: PolicyResult = ALL_POLICIES_PASSED,
): PolicyResult {
  for (const check of checks) {
    const result = check(input);
    if (result && !result.ok) return result;
  }
  return passed;
}
