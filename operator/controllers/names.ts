/**
 * Names and labels of the children the operator creates. Children are found again by name (so a
 * restarted operator never creates a second one) and listed by label.
 */
import { createHash } from 'node:crypto';

/** Longest name of a child: Job and label values are limited to 63 characters. */
const MAX_NAME = 63;

/** A short, stable hash of `parts`, for names and labels. */
export function shortHash(...parts: readonly string[]): string {
  return createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 10);
}

/**
 * `parent-suffix`, cut to 63 characters with a hash of the whole when too long, so that distinct
 * parents never share a child name and the result is a valid DNS label.
 */
export function childName(parent: string, suffix: string): string {
  const full = `${parent}-${suffix}`;
  if (full.length <= MAX_NAME) return full;
  const hash = shortHash(parent, suffix);
  const keep = MAX_NAME - suffix.length - hash.length - 2;
  return `${parent.slice(0, Math.max(1, keep)).replace(/[-.]+$/, '')}-${hash}-${suffix}`.slice(
    0,
    MAX_NAME,
  );
}

/** A label value for an object name: the name itself when short enough, else a hash-cut form. */
export function labelValue(name: string): string {
  return name.length <= MAX_NAME ? name : `${name.slice(0, 52)}-${shortHash(name)}`;
}

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'compofa-operator';
/** The role of a pod: training, evaluation, profiling, extraction or serving. */
export const COMPONENT_LABEL = 'app.kubernetes.io/component';
export const TRAINING_LABEL = 'compofa.io/supernet-training';
export const PROFILE_LABEL = 'compofa.io/latency-profile';
export const TARGET_LABEL = 'compofa.io/deployment-target';

/** The labels every child carries, plus the ones naming its owner. */
export function childLabels(
  owner: Readonly<Record<string, string>>,
  component: string,
): Record<string, string> {
  const labels: Record<string, string> = {
    [MANAGED_BY_LABEL]: MANAGED_BY,
    'app.kubernetes.io/part-of': 'compofa',
    [COMPONENT_LABEL]: component,
  };
  for (const [key, value] of Object.entries(owner)) labels[key] = labelValue(value);
  return labels;
}
