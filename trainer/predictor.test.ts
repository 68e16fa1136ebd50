import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  architectureKey,
  IMAGENET_ARCHITECTURE,
  SMALL_ARCHITECTURE,
} from '../compofa/architecture.js';
import { subnetCost } from '../compofa/cost.js';
import {
  CompoundSpace,
  ElasticSpace,
  MAX_DEPTH,
  SubnetSpecError,
  type DesignSpace,
  type SubnetSpec,
} from '../compofa/design-space.js';
import { Random } from '../compofa/random.js';
import { parseAccuracyTable } from '../compofa/tables.js';
import { loadTensorFlow, type TensorFlow } from './backend.js';
import {
  AccuracyPredictor,
  encodeSubnet,
  encodingLength,
  predictedAccuracyTable,
  type PredictorReport,
  type PredictorRow,
} from './predictor.js';

const mean = (values: readonly number[]): number =>
  values.reduce((sum, value) => sum + value, 0) / values.length;
const std = (values: readonly number[]): number => {
  const m = mean(values);
  return Math.sqrt(mean(values.map((value) => (value - m) ** 2)));
};

/** Ranks with ties averaged. */
function ranks(values: readonly number[]): number[] {
  const order = values.map((value, index) => ({ value, index })).sort((a, b) => a.value - b.value);
  const result = new Array<number>(values.length).fill(0);
  for (let start = 0; start < order.length;) {
    let end = start;
    while (end + 1 < order.length && order[end + 1]?.value === order[start]?.value) end++;
    for (let i = start; i <= end; i++) result[order[i]?.index ?? 0] = (start + end) / 2;
    start = end + 1;
  }
  return result;
}

function spearman(a: readonly number[], b: readonly number[]): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const ma = mean(ra);
  const mb = mean(rb);
  let covariance = 0;
  let va = 0;
  let vb = 0;
  ra.forEach((x, i) => {
    const y = rb[i] ?? 0;
    covariance += (x - ma) * (y - mb);
    va += (x - ma) ** 2;
    vb += (y - mb) ** 2;
  });
  return covariance / Math.sqrt(va * vb);
}

/** Share of pairs with a strict true order that the prediction orders the same way. */
function pairwiseAgreement(predicted: readonly number[], truth: readonly number[]): number {
  let agree = 0;
  let total = 0;
  for (let i = 0; i < truth.length; i++) {
    for (let j = i + 1; j < truth.length; j++) {
      const order = (truth[i] ?? 0) - (truth[j] ?? 0);
      if (order === 0) continue;
      total++;
      if (order * ((predicted[i] ?? 0) - (predicted[j] ?? 0)) > 0) agree++;
    }
  }
  return agree / total;
}

/** `count` distinct random subnets of `space`. */
function distinctSubnets(space: DesignSpace, count: number, seed: number): SubnetSpec[] {
  const random = new Random(seed);
  const specs = new Map<string, SubnetSpec>();
  while (specs.size < count) {
    const spec = space.sample(random);
    specs.set(space.format(spec), spec);
  }
  return [...specs.values()];
}

/**
 * A stand-in for measured accuracy: a smooth, saturating function of the subnets' analytic MACs
 * and parameters (normalised over `specs`), plus a little uniform noise. MACs are not additive in
 * the one-hot encoding (the depthwise cost is kernel^2 x expand), so the MLP has to learn
 * interactions, as with real accuracies.
 */
function syntheticAccuracy(
  space: DesignSpace,
  specs: readonly SubnetSpec[],
  seed: number,
): number[] {
  const costs = specs.map((spec) => subnetCost(space.architecture, spec));
  const logMacs = costs.map((cost) => Math.log(cost.macs));
  const logParams = costs.map((cost) => Math.log(cost.params));
  const [macsMean, macsStd, paramsMean, paramsStd] = [
    mean(logMacs),
    std(logMacs),
    mean(logParams),
    std(logParams),
  ];
  const noise = new Random(seed);
  return specs.map(
    (_, i) =>
      0.75 +
      0.08 * Math.tanh(((logMacs[i] ?? 0) - macsMean) / macsStd) +
      0.03 * Math.tanh(((logParams[i] ?? 0) - paramsMean) / paramsStd) +
      0.004 * (2 * noise.next() - 1),
  );
}

const toRows = (space: DesignSpace, specs: readonly SubnetSpec[], accuracies: number[]) =>
  specs.map((spec, i): PredictorRow => ({
    subnet: space.format(spec),
    accuracy: accuracies[i] ?? 0,
  }));

describe('encodeSubnet', () => {
  it("has OFA's length: units x MAX_DEPTH x (kernels + expands) + resolutions, 128 with 8 resolutions", () => {
    const imagenet = new ElasticSpace(IMAGENET_ARCHITECTURE);
    assert.equal(encodingLength(imagenet), 20 * (3 + 3) + IMAGENET_ARCHITECTURE.resolutions.length);
    const eight = new ElasticSpace({
      ...IMAGENET_ARCHITECTURE,
      resolutions: [112, 128, 144, 160, 176, 192, 208, 224],
    });
    assert.equal(encodingLength(eight), 128);
    assert.equal(encodeSubnet(eight, eight.largest()).length, 128);
    // The compound space has one kernel per unit: a one-value "one-hot" marks an active block.
    const compound = new CompoundSpace(IMAGENET_ARCHITECTURE);
    assert.equal(encodingLength(compound), 20 * (1 + 3) + 5);
    assert.equal(encodeSubnet(compound, compound.largest()).length, 20 * (1 + 3) + 5);
  });

  it('sets one kernel and one expand value per active block, zeros for inactive blocks, then the resolution', () => {
    const space = new ElasticSpace(IMAGENET_ARCHITECTURE);
    const spec = space.parse(
      'r192-k3e3.k7e6-k5e4.k3e6.k7e3-k7e4.k5e3.k3e6.k5e4-k3e6.k3e6-k5e3.k7e4.k3e3',
    );
    const encoding = encodeSubnet(space, spec);
    const kernels = [3, 5, 7];
    const expands = [3, 4, 6];
    let position = 0;
    spec.units.forEach((unit, u) => {
      for (let block = 0; block < MAX_DEPTH; block++) {
        const group = [...encoding.subarray(position, position + 6)];
        if (block < unit.depth) {
          const expected = [0, 0, 0, 0, 0, 0];
          expected[kernels.indexOf(unit.kernelSizes[block] ?? 0)] = 1;
          expected[3 + expands.indexOf(unit.expandRatios[block] ?? 0)] = 1;
          assert.deepEqual(group, expected, `unit ${u + 1} block ${block + 1}`);
        } else {
          assert.deepEqual(group, [0, 0, 0, 0, 0, 0], `inactive unit ${u + 1} block ${block + 1}`);
        }
        position += 6;
      }
    });
    assert.deepEqual([...encoding.subarray(position)], [0, 0, 1, 0, 0], 'resolution 192');
    const activeBlocks = spec.units.reduce((sum, unit) => sum + unit.depth, 0);
    assert.equal(
      encoding.reduce((sum, value) => sum + value, 0),
      2 * activeBlocks + 1,
    );
    assert.throws(
      () => encodeSubnet(space, { ...spec, resolution: 100 }),
      (error) => error instanceof SubnetSpecError && /resolution 100/.test(error.message),
    );
  });
});

describe('AccuracyPredictor', () => {
  let tf: TensorFlow;
  let dir: string;
  const space = new ElasticSpace(SMALL_ARCHITECTURE);
  // 600 training subnets (480 train, 120 validation) and 200 held out, all distinct.
  const specs = distinctSubnets(space, 800, 11);
  const accuracies = syntheticAccuracy(space, specs, 12);
  const rows = toRows(space, specs.slice(0, 600), accuracies.slice(0, 600));
  const heldOut = specs.slice(600);
  const heldOutTruth = accuracies.slice(600);
  let predictor: AccuracyPredictor;
  let report: PredictorReport;

  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'training' }));
    dir = await mkdtemp(join(tmpdir(), 'compofa-predictor-'));
    ({ predictor, report } = await AccuracyPredictor.train(tf, space, rows, {
      epochs: 30,
      seed: 5,
    }));
  });

  after(async () => {
    predictor.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('learns a smooth function of MACs and params from 600 elastic subnets: low RMSE, good ranking on held-out subnets', (t) => {
    const target = std(accuracies.slice(0, 600));
    const predicted = predictor.predict(heldOut);
    const heldOutRmse = Math.sqrt(
      mean(predicted.map((value, i) => (value - (heldOutTruth[i] ?? 0)) ** 2)),
    );
    const rho = spearman(predicted, heldOutTruth);
    const pairs = pairwiseAgreement(predicted, heldOutTruth);
    t.diagnostic(
      `target std ${target.toFixed(4)}; train RMSE ${report.trainRmse.toFixed(4)}, validation RMSE ${report.validationRmse.toFixed(4)} (${(report.validationRmse / target).toFixed(3)} of std), held-out RMSE ${heldOutRmse.toFixed(4)}, Spearman ${rho.toFixed(3)}, pairwise ${pairs.toFixed(3)}`,
    );
    assert.equal(report.samples, 480);
    assert.equal(report.epochs, 30);
    assert.ok(
      report.validationRmse < 0.4 * target,
      `validation RMSE ${report.validationRmse} vs target std ${target}`,
    );
    assert.ok(heldOutRmse < 0.4 * target, `held-out RMSE ${heldOutRmse} vs target std ${target}`);
    assert.ok(rho > 0.8, `Spearman ${rho}`);
    assert.ok(pairs > 0.8, `pairwise agreement ${pairs}`);
    assert.ok(predicted.every((value) => value >= 0 && value <= 1));
  });

  it('is deterministic from its seed', async () => {
    const small = rows.slice(0, 120);
    const options = { epochs: 3, hiddenUnits: [64, 64], seed: 9 };
    const train = async (seed: number) => {
      const trained = await AccuracyPredictor.train(tf, space, small, { ...options, seed });
      const values = trained.predictor.predict(heldOut);
      trained.predictor.dispose();
      return { values, report: trained.report };
    };
    const first = await train(9);
    const second = await train(9);
    const other = await train(10);
    assert.deepEqual(second, first);
    assert.notDeepEqual(other.values, first.values);
  });

  it('saves atomically and loads to identical predictions, refusing another architecture or space', async () => {
    const target = join(dir, 'predictor');
    await predictor.save(target);
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.includes('.tmp')),
      [],
      'no temporary folder remains',
    );
    const metadata = JSON.parse(await readFile(join(target, 'predictor.json'), 'utf8'));
    assert.equal(metadata.designSpace, 'elastic');
    assert.equal(metadata.architectureKey, architectureKey(SMALL_ARCHITECTURE));
    assert.equal(metadata.encodingLength, encodingLength(space));
    const loaded = await AccuracyPredictor.load(tf, space, target);
    assert.deepEqual(loaded.predict(heldOut), predictor.predict(heldOut));
    assert.deepEqual(loaded.report, report);
    loaded.dispose();
    // A second save replaces the first.
    await predictor.save(target);
    assert.ok((await readdir(target)).includes('model.json'));

    await assert.rejects(
      AccuracyPredictor.load(tf, new ElasticSpace(IMAGENET_ARCHITECTURE), target),
      (error: Error) =>
        error.name === 'PredictorError' &&
        error.message.includes(target) &&
        error.message.includes(architectureKey(IMAGENET_ARCHITECTURE)),
    );
    await assert.rejects(
      AccuracyPredictor.load(tf, new CompoundSpace(SMALL_ARCHITECTURE), target),
      (error: Error) =>
        error.message.includes(target) &&
        /elastic space .* not the compound space/.test(error.message),
    );
    await assert.rejects(AccuracyPredictor.load(tf, space, join(dir, 'missing')), (error: Error) =>
      error.message.includes(join(dir, 'missing')),
    );
  });

  it('writes a predicted accuracy table that parseAccuracyTable accepts', () => {
    const subnets = [...heldOut.slice(0, 50), heldOut[0] ?? space.largest()];
    const table = predictedAccuracyTable(space, predictor, subnets, {
      dataset: { name: 'fashion-mnist', split: 'validation', samples: 10000 },
      settings: { predictor: 'predictors/small-elastic' },
      now: () => new Date(0),
    });
    const parsed = parseAccuracyTable(JSON.parse(JSON.stringify(table)), 'predicted.json', space);
    assert.deepEqual(parsed, table);
    assert.equal(parsed.method, 'predicted');
    assert.equal(parsed.rows.length, 50, 'a duplicate subnet is listed once');
    assert.equal(parsed.settings.predictor, 'predictors/small-elastic');
    assert.equal(parsed.settings.predictorSamples, 480);
    assert.deepEqual(
      parsed.rows.map((row) => row.accuracy),
      predictor.predict(heldOut.slice(0, 50)),
    );
    assert.throws(
      () =>
        predictedAccuracyTable(new ElasticSpace(IMAGENET_ARCHITECTURE), predictor, subnets, {
          dataset: { name: 'x', split: 'validation', samples: 1 },
        }),
      /architecture/,
    );
  });

  it('leaks no tensors across train, predict, save and dispose', async () => {
    const before = tf.memory().numTensors;
    const trained = await AccuracyPredictor.train(tf, space, rows.slice(0, 100), {
      epochs: 2,
      hiddenUnits: [32],
      validationFraction: 0,
    });
    assert.ok(Number.isNaN(trained.report.validationRmse));
    trained.predictor.predict(heldOut);
    trained.predictor.predict([]);
    await trained.predictor.save(join(dir, 'leak'));
    const loaded = await AccuracyPredictor.load(tf, space, join(dir, 'leak'));
    loaded.predict(heldOut);
    assert.ok(Number.isNaN(loaded.report?.validationRmse), 'no validation rows: NaN survives JSON');
    loaded.dispose();
    trained.predictor.dispose();
    assert.equal(tf.memory().numTensors, before);
    assert.throws(() => trained.predictor.predict(heldOut), /disposed/);
  });

  it('trains on the compound space too', async () => {
    const compound = new CompoundSpace(SMALL_ARCHITECTURE);
    const all = [...compound.enumerate()];
    const trained = await AccuracyPredictor.train(
      tf,
      compound,
      toRows(compound, all, syntheticAccuracy(compound, all, 3)),
      { epochs: 5, hiddenUnits: [64, 64] },
    );
    assert.equal(trained.report.samples, all.length - Math.round(all.length * 0.2));
    assert.ok(Number.isFinite(trained.report.validationRmse));
    assert.equal(trained.predictor.predict(all).length, 243);
    trained.predictor.dispose();
  });

  it('names the bad row or option', async () => {
    const train = (input: readonly PredictorRow[], options = {}) =>
      AccuracyPredictor.train(tf, space, input, { epochs: 1, hiddenUnits: [4], ...options });
    const good = rows.slice(0, 10);
    await assert.rejects(
      train([...good, { subnet: 'r28-k9e3', accuracy: 0.5 }]),
      (error: Error) => error instanceof SubnetSpecError && error.message.startsWith('rows[10]'),
    );
    await assert.rejects(
      train([...good, { subnet: space.format(space.largest()), accuracy: 1.5 }]),
      /rows\[10\].*accuracy must be in \[0, 1\], got 1\.5/,
    );
    await assert.rejects(
      train([...good, good[3] ?? { subnet: '', accuracy: 0 }]),
      /rows\[10\]: subnet .* appears twice \(first in rows\[3\]\)/,
    );
    for (const [option, value] of [
      ['epochs', 0],
      ['batchSize', 2.5],
      ['learningRate', -1],
      ['l2', -0.1],
      ['validationFraction', 1],
      ['seed', Number.NaN],
      ['hiddenUnits', [8, 0]],
    ] as const) {
      await assert.rejects(
        train(good, { [option]: value }),
        (error: Error) => error instanceof RangeError && error.message.startsWith(option),
        option,
      );
    }
    await assert.rejects(train([]), /nothing to train on/);
  });
});
