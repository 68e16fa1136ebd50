/**
 * A DeploymentTarget's choice, pure: the trained supernet's accuracy table joined with the
 * device's latency table, then CompOFA's exhaustive selection (compofa/selection.ts) under the
 * target's budget, statistic and accuracy floor. The same tables and spec always give the same
 * subnet.
 */
import { ARCHITECTURE_PRESETS } from '../../../compofa/architecture.js';
import { createDesignSpace } from '../../../compofa/design-space.js';
import { selectSubnet } from '../../../compofa/selection.js';
import { joinTables, parseAccuracyTable, parseLatencyTable } from '../../../compofa/tables.js';
import { Memo } from '../../runtime/memo.js';
import type {
  ClosestSubnet,
  DeploymentTarget,
  SelectedSubnet,
  SupernetTraining,
} from '../../api/index.js';

/** A table's JSON text and where it came from (for messages). */
export interface TableText {
  readonly text: string | undefined;
  readonly where: string;
}

/** The outcome of {@link chooseSubnet}; `reason` is a stable condition reason. */
export type Choice =
  | {
      readonly ok: true;
      readonly selected: SelectedSubnet;
      readonly predictedAccuracy: number;
      readonly expectedLatencyMs: number;
      readonly message: string;
    }
  | {
      readonly ok: false;
      readonly reason:
        'InvalidTable' | 'NothingFitsBudget' | 'BelowAccuracyFloor' | 'NoMeasurements';
      readonly message: string;
      readonly closest?: ClosestSubnet;
    };

/**
 * Parsed and joined tables by (space, architecture, statistic, accuracy text, latency text): every
 * target of a fleet reads the same two ConfigMaps, and parsing them is most of a selection's cost.
 */
const JOINED = new Memo<ReturnType<typeof joinTables> | { error: string }>(16);

/**
 * Selects the subnet `target` should serve from the two tables of `training`'s supernet, with the
 * profiled latencies multiplied by `latencyScale` (status.latencyCorrection: how much slower the
 * device serves than it profiled).
 */
export function chooseSubnet(
  target: Pick<DeploymentTarget, 'spec'>,
  training: Pick<SupernetTraining, 'spec'>,
  accuracy: TableText,
  latency: TableText,
  latencyScale = 1,
): Choice {
  const kind = training.spec.designSpace ?? 'compound';
  const preset = training.spec.architecture?.preset ?? 'small';
  const space = createDesignSpace(kind, ARCHITECTURE_PRESETS[preset]);
  const statistic = target.spec.latencyStatistic ?? 'p95';
  const joined = JOINED.get([kind, preset, statistic, accuracy.text, latency.text], () => {
    try {
      const parse = (table: TableText): unknown => {
        if (table.text === undefined) throw new Error(`${table.where} holds no table`);
        return JSON.parse(table.text);
      };
      return joinTables(
        parseAccuracyTable(parse(accuracy), accuracy.where, space),
        parseLatencyTable(parse(latency), latency.where, space),
        statistic,
      );
    } catch (error) {
      return { error: (error as Error).message };
    }
  });
  if ('error' in joined) return { ok: false, reason: 'InvalidTable', message: joined.error };
  const floor = target.spec.objective?.accuracyFloor;
  const measurements =
    latencyScale === 1
      ? joined.measurements
      : joined.measurements.map((m) => ({ ...m, latencyMs: m.latencyMs * latencyScale }));
  const result = selectSubnet(measurements, {
    latencyBudgetMs: target.spec.latencyBudgetMs,
    ...(floor === undefined ? {} : { accuracyFloor: floor }),
  });
  if (result.ok) {
    const spec = space.parse(result.selected.id);
    return {
      ok: true,
      selected: {
        id: result.selected.id,
        resolution: spec.resolution,
        depths: spec.units.map((unit) => unit.depth),
        expandRatios: spec.units.flatMap((unit) => unit.expandRatios),
        kernelSizes: spec.units.flatMap((unit) => unit.kernelSizes),
      },
      predictedAccuracy: result.selected.accuracy,
      expectedLatencyMs: result.selected.latencyMs,
      message:
        latencyScale === 1
          ? result.message
          : `${result.message} (profiled latencies x ${latencyScale.toFixed(2)}, as served)`,
    };
  }
  const near =
    result.reason === 'NothingFitsBudget'
      ? result.fastest
      : result.reason === 'BelowAccuracyFloor'
        ? result.best
        : undefined;
  return {
    ok: false,
    reason: result.reason,
    message: result.message,
    ...(near
      ? {
          closest: {
            id: near.id,
            predictedAccuracy: near.accuracy,
            expectedLatencyMs: near.latencyMs,
          },
        }
      : {}),
  };
}
