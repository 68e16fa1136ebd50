import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { KubeConfig } from '@kubernetes/client-node';
import {
  CoordinationV1Api,
  CoreV1Api,
  EventsV1Api,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';

import { EventRecorder } from '../../operator/runtime/events.js';
import {
  LeaderElector,
  type LeaderElectorOptions,
  type StoppedLeadingReason,
} from '../../operator/runtime/leader-election.js';
import { ControlPlane } from '../harness/control-plane.js';
import { waitFor } from '../harness/wait.js';

const NAMESPACE = 'leader-election';

/** Short timings so that expiry and step-down happen within seconds. */
const FAST = { leaseDurationMs: 2_000, renewDeadlineMs: 1_500, retryPeriodMs: 300 } as const;

/** The Role the operator needs for leader election, and to report it with Events. */
const LEADER_ELECTION_RULES = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
];

interface Candidate {
  readonly elector: LeaderElector;
  readonly newLeaders: string[];
  readonly stopped: { at: number; reason: StoppedLeadingReason }[];
}

describe('leader election against the API server', () => {
  let plane: ControlPlane;
  let admin: KubeConfig;
  let leases: CoordinationV1Api;
  const running: LeaderElector[] = [];

  before(async () => {
    plane = await ControlPlane.start();
    admin = plane.kubeConfig();
    leases = admin.makeApiClient(CoordinationV1Api);
    await plane.createNamespace(NAMESPACE);
  });
  after(async () => {
    await Promise.all(running.map((elector) => elector.stop()));
    await plane.stop();
  });

  const eventually = <T>(
    probe: () => Promise<T | undefined | false> | T | undefined | false,
    description: string,
    timeoutMs = 15_000,
  ): Promise<T> => waitFor(probe, { description, timeoutMs, intervalMs: 20, hint: plane.logHint });

  function start(
    identity: string,
    lease: string,
    options: Partial<LeaderElectorOptions> = {},
  ): Candidate {
    const candidate: Candidate = {
      newLeaders: [],
      stopped: [],
      elector: new LeaderElector({
        api: leases,
        namespace: NAMESPACE,
        name: lease,
        identity,
        ...FAST,
        onNewLeader: (leader) => candidate.newLeaders.push(leader),
        onStoppedLeading: (reason) => candidate.stopped.push({ at: Date.now(), reason }),
        ...options,
      }),
    };
    running.push(candidate.elector);
    void candidate.elector.run();
    return candidate;
  }

  /** Samples `isLeader` of every candidate every 10 ms until stopped; fails on two leaders. */
  function watchLeaders(candidates: readonly Candidate[]): {
    samples: () => (string | undefined)[];
    stop: () => void;
  } {
    const seen: (string | undefined)[] = [];
    let violation: string | undefined;
    const timer = setInterval(() => {
      const leaders = candidates.filter((c) => c.elector.isLeader).map((c) => c.elector.identity);
      if (leaders.length > 1) violation ??= `${leaders.join(' and ')} both lead`;
      seen.push(leaders[0]);
    }, 10);
    return {
      samples: () => seen,
      stop: () => {
        clearInterval(timer);
        assert.equal(violation, undefined, violation);
      },
    };
  }

  const leaderOf = (candidates: readonly Candidate[]): Candidate | undefined =>
    candidates.find((c) => c.elector.isLeader);

  async function holder(lease: string): Promise<{ identity: string; transitions: number }> {
    const spec = (await leases.readNamespacedLease({ name: lease, namespace: NAMESPACE })).spec;
    return { identity: spec?.holderIdentity ?? '', transitions: spec?.leaseTransitions ?? 0 };
  }

  it('lets exactly one of two candidates lead, and names it in the Lease', async () => {
    const candidates = [start('alpha', 'one-leader'), start('beta', 'one-leader')];
    const watch = watchLeaders(candidates);
    const leader = await eventually(() => leaderOf(candidates), 'a leader');
    const standby = candidates.find((c) => c !== leader);
    assert.ok(standby);
    const from = watch.samples().length;
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    watch.stop();
    const samples = watch.samples().slice(from);
    assert.ok(samples.length > 100, `${samples.length} samples`);
    assert.deepEqual(
      [...new Set(samples)],
      [leader.elector.identity],
      'the same one candidate led at every sample',
    );
    assert.deepEqual(await holder('one-leader'), {
      identity: leader.elector.identity,
      transitions: 0,
    });
    assert.equal(standby.elector.isLeader, false);
    assert.deepEqual(standby.newLeaders, [leader.elector.identity]);
    await Promise.all(candidates.map((c) => c.elector.stop()));
  });

  it('hands over after the lease expires when the leader stops renewing without releasing', async (t) => {
    const candidates = [start('gamma', 'crash'), start('delta', 'crash')];
    const watch = watchLeaders(candidates);
    const leader = await eventually(() => leaderOf(candidates), 'a leader');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const before = await holder('crash');
    assert.equal(before.identity, leader.elector.identity);

    const crashedAt = Date.now();
    await leader.elector.stop(); // no release: to the others it looks like a crash
    const successor = await eventually(() => leaderOf(candidates), 'a new leader');
    const handover = Date.now() - crashedAt;
    watch.stop();
    t.diagnostic(`took over ${handover} ms after the leader stopped renewing`);

    assert.notEqual(successor, leader);
    // The successor last saw a renewal at most a retry period (plus a request) before the crash.
    assert.ok(handover >= FAST.leaseDurationMs - 500, `took over after only ${handover} ms`);
    assert.ok(handover < 6_000, `took over after ${handover} ms`);
    assert.deepEqual(await holder('crash'), {
      identity: successor.elector.identity,
      transitions: before.transitions + 1,
    });
    assert.ok(successor.newLeaders.includes(successor.elector.identity));
    await successor.elector.stop();
  });

  it('hands over at once, long before the lease expires, when the leader releases', async (t) => {
    // A long lease: a takeover within a few retry periods can only come from the release.
    const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 5_000, retryPeriodMs: 300 };
    const candidates = [start('epsilon', 'release', timing), start('zeta', 'release', timing)];
    const watch = watchLeaders(candidates);
    const leader = await eventually(() => leaderOf(candidates), 'a leader');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const before = await holder('release');

    const releasedAt = Date.now();
    assert.equal(await leader.elector.release(), true);
    const successor = await eventually(() => leaderOf(candidates), 'a new leader');
    const handover = Date.now() - releasedAt;
    watch.stop();
    t.diagnostic(`took over ${handover} ms after the release`);

    assert.notEqual(successor, leader);
    assert.ok(handover < 3_000, `took over after ${handover} ms`);
    assert.deepEqual(
      leader.stopped.map((s) => s.reason),
      ['stopped'],
    );
    assert.deepEqual(await holder('release'), {
      identity: successor.elector.identity,
      transitions: before.transitions + 1,
    });
    const lease = await leases.readNamespacedLease({ name: 'release', namespace: NAMESPACE });
    assert.equal(lease.spec?.leaseDurationSeconds, 15, 'the successor wrote its own duration');
    await successor.elector.stop();
  });

  it('releases by writing an empty holder and a 1 s lease, keeping the transition count', async () => {
    const candidate = start('kappa', 'released');
    await eventually(() => candidate.elector.isLeader, 'kappa to lead');
    assert.equal(await candidate.elector.release(), true);
    const { spec } = await leases.readNamespacedLease({ name: 'released', namespace: NAMESPACE });
    assert.ok(spec);
    assert.equal(spec.holderIdentity, '', 'an empty holder is stored as such');
    assert.equal(spec.leaseDurationSeconds, 1);
    assert.equal(spec.leaseTransitions, 0);
    assert.match(String(spec.renewTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.equal(await candidate.elector.release(), true, 'releasing twice does nothing');
    assert.deepEqual(
      candidate.stopped.map((s) => s.reason),
      ['stopped'],
    );
  });

  it('steps down at once when someone else takes the Lease behind its back', async (t) => {
    const candidate = start('eta', 'tampered');
    await eventually(() => candidate.elector.isLeader, 'eta to lead');
    const lease = await leases.readNamespacedLease({ name: 'tampered', namespace: NAMESPACE });
    assert.ok(lease.spec);
    lease.spec.holderIdentity = 'intruder';
    const tamperedAt = Date.now();
    await leases.replaceNamespacedLease({ name: 'tampered', namespace: NAMESPACE, body: lease });

    const [stopped] = await eventually(
      () => (candidate.stopped.length > 0 ? candidate.stopped : undefined),
      'eta to stop leading',
    );
    assert.ok(stopped);
    assert.equal(stopped.reason, 'lost');
    t.diagnostic(`stepped down ${stopped.at - tamperedAt} ms after the Lease changed hands`);
    assert.ok(stopped.at - tamperedAt < FAST.renewDeadlineMs, `${stopped.at - tamperedAt} ms`);
    assert.equal(candidate.elector.isLeader, false);
    assert.equal((await holder('tampered')).identity, 'intruder', 'and did not overwrite it');
    assert.deepEqual(candidate.newLeaders, ['eta', 'intruder']);
  });

  it('works with a least-privilege Role, and steps down after the renew deadline when renewals are forbidden', async (t) => {
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: NAMESPACE,
      body: { metadata: { name: 'operator-leader-election' }, rules: LEADER_ELECTION_RULES },
    });
    const restricted = await serviceAccountConfig(plane, NAMESPACE, 'operator');
    await rbac.createNamespacedRoleBinding({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'operator-leader-election' },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'Role',
          name: 'operator-leader-election',
        },
        subjects: [{ kind: 'ServiceAccount', name: 'operator', namespace: NAMESPACE }],
      },
    });
    const events = new EventRecorder({
      api: restricted.makeApiClient(EventsV1Api),
      reportingInstance: 'rbac-test',
    });
    const options = { api: restricted.makeApiClient(CoordinationV1Api), events };
    const candidates = [start('theta', 'rbac', options), start('iota', 'rbac', options)];
    const watch = watchLeaders(candidates);
    // create (the Lease is new), get and update (renewals, takeover), and update again (release).
    const first = await eventually(() => leaderOf(candidates), 'a leader');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    assert.equal(await first.elector.release(), true);
    const second = await eventually(() => leaderOf(candidates), 'the other to lead');
    assert.notEqual(second, first);
    assert.deepEqual(await holder('rbac'), { identity: second.elector.identity, transitions: 1 });
    await events.flush();
    const recorded = await admin
      .makeApiClient(EventsV1Api)
      .listNamespacedEvent({ namespace: NAMESPACE });
    const notes = recorded.items
      .filter((e) => e.regarding?.kind === 'Lease' && e.regarding.name === 'rbac')
      .map((e) => `${e.reason ?? ''}/${e.action ?? ''}: ${e.note ?? ''}`)
      .sort();
    assert.deepEqual(
      notes,
      [
        `LeaderElection/BecameLeader: ${first.elector.identity} became leader`,
        `LeaderElection/BecameLeader: ${second.elector.identity} became leader`,
        `LeaderElection/StoppedLeading: ${first.elector.identity} stopped leading`,
      ].sort(),
    );

    const revokedAt = Date.now();
    await rbac.deleteNamespacedRoleBinding({
      name: 'operator-leader-election',
      namespace: NAMESPACE,
    });
    const [stopped] = await eventually(
      () => (second.stopped.length > 0 ? second.stopped : undefined),
      'the leader to stop leading',
    );
    watch.stop();
    assert.ok(stopped);
    assert.equal(stopped.reason, 'lost');
    const after = stopped.at - revokedAt;
    t.diagnostic(`stepped down ${after} ms after its RoleBinding was deleted`);
    // It keeps trying until the renew deadline, counted from its last successful renewal.
    assert.ok(after >= FAST.renewDeadlineMs - FAST.retryPeriodMs - 200, `after ${after} ms`);
    assert.ok(after < FAST.renewDeadlineMs + 2_000, `after ${after} ms`);
    assert.equal(second.elector.isLeader, false);
    assert.equal(first.elector.isLeader, false);
  });
});

/** Creates ServiceAccount `name` and a KubeConfig that authenticates as it. */
async function serviceAccountConfig(
  plane: ControlPlane,
  namespace: string,
  name: string,
): Promise<KubeConfig> {
  await plane
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  return plane.kubeConfigAs(namespace, name);
}
