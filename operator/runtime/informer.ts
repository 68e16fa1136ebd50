/**
 * A shared informer that does not die: client-node's {@link ListWatch} stops for good on any error
 * other than 410 Gone, and its watch has no idle timeout, so a connection that silently stops
 * delivering events is never noticed. {@link ResilientInformer} runs one `ListWatch` at a time,
 * replaces it with a fresh one (and a fresh list) after every failure, with exponential backoff,
 * and re-lists periodically, as client-go's reflector and resync do. Its own cache outlives the
 * `ListWatch` runs, so readers see the last known state while a run is being replaced.
 */
import {
  ApiException,
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  ListWatch,
  RequestContext,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type ListPromise,
} from '@kubernetes/client-node';

/** Structured logging, as the operator's logger provides it. */
export interface InformerLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** Time and timers, injectable for tests. */
export interface InformerClock {
  now(): number;
  /** Calls `callback` after `ms`; the returned function cancels it. */
  setTimeout(callback: () => void, ms: number): () => void;
}

/** Delays between restarts of a failing informer. */
export interface BackoffOptions {
  /** First delay; default 200 ms. */
  readonly initialMs?: number;
  /** Cap; default 30 s. */
  readonly maxMs?: number;
  /** Growth per failure; default 2. */
  readonly factor?: number;
  /**
   * A run that stayed up this long before failing counts as successful: the next delay starts
   * again at `initialMs`. Default 60 s (client-go's reflector uses 2 min).
   */
  readonly resetAfterMs?: number;
}

/** What happened to an object. */
export type InformerEvent = 'add' | 'update' | 'delete';

/** Called for every event; `old` is the previously cached object of an update. */
export type ChangeHandler<T> = (event: InformerEvent, obj: T, old?: T) => void | Promise<void>;

/** Options of {@link ResilientInformer}. */
export interface ResilientInformerOptions<T extends KubernetesObject> {
  readonly kubeConfig: KubeConfig;
  /**
   * The collection to list and watch, e.g. `/api/v1/namespaces/ns/configmaps`,
   * `/apis/batch/v1/jobs` (all namespaces) or `/apis/compofa.io/v1alpha1/supernettrainings`;
   * see {@link resourcePath}.
   */
  readonly path: string;
  /** Only objects with these labels, e.g. `app.kubernetes.io/managed-by=compofa`. */
  readonly labelSelector?: string;
  /**
   * Lists the collection. By default a plain GET of {@link path} (with the label selector), which
   * returns the API server's JSON as is, like the watch does. A typed client call such as
   * `() => core.listNamespacedConfigMap({ namespace })` works too but returns model objects
   * (timestamps as `Date`) while watch events carry plain JSON (timestamps as strings); it must
   * apply the same label selector.
   */
  readonly list?: ListPromise<T>;
  /** Re-list this often, so that a dead watch heals and handlers see every object again; default 5 min, 0: never. */
  readonly resyncMs?: number;
  /** A list that takes longer fails the run; default 60 s. */
  readonly listTimeoutMs?: number;
  readonly backoff?: BackoffOptions;
  readonly logger?: InformerLogger;
  readonly clock?: InformerClock;
  /** For log messages; default the path. */
  readonly name?: string;
}

/** Builds an API path for a resource collection: core (`group` empty), other groups, namespaced or all namespaces. */
export function resourcePath(resource: {
  readonly group?: string;
  readonly version: string;
  readonly plural: string;
  readonly namespace?: string;
}): string {
  const root = resource.group
    ? `/apis/${resource.group}/${resource.version}`
    : `/api/${resource.version}`;
  const namespace = resource.namespace
    ? `/namespaces/${encodeURIComponent(resource.namespace)}`
    : '';
  return `${root}${namespace}/${resource.plural}`;
}

/** The cache key of an object, as client-go's MetaNamespaceKeyFunc makes it: `namespace/name`, or `name` if cluster-scoped. */
export function objectKey(obj: KubernetesObject): string {
  const name = obj.metadata?.name ?? '';
  const namespace = obj.metadata?.namespace;
  return namespace ? `${namespace}/${name}` : name;
}

/**
 * The key (`namespace/name`) of the object's controller owner of kind `ownerKind`, or undefined:
 * maps a Job, Deployment or ConfigMap event to the custom resource to reconcile. With
 * `ownerApiVersion`, the owner's API group must match too (the version may differ, as owner
 * references outlive version changes; controller-runtime compares groups as well). Owners are in
 * the child's namespace: owner references cannot cross namespaces.
 */
export function ownerKey(
  obj: KubernetesObject,
  ownerKind: string,
  ownerApiVersion?: string,
): string | undefined {
  const group = (apiVersion: string): string =>
    apiVersion.includes('/') ? (apiVersion.split('/')[0] ?? '') : '';
  const owner = obj.metadata?.ownerReferences?.find(
    (ref) =>
      ref.controller === true &&
      ref.kind === ownerKind &&
      (ownerApiVersion === undefined || group(ref.apiVersion) === group(ownerApiVersion)),
  );
  if (!owner) return undefined;
  const namespace = obj.metadata?.namespace;
  return namespace ? `${namespace}/${owner.name}` : owner.name;
}

/** Exponential delays: `initialMs`, doubling up to `maxMs`, until {@link reset}. */
export class ExponentialBackoff {
  private failures = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 200;
    this.maxMs = options.maxMs ?? 30_000;
    this.factor = options.factor ?? 2;
  }

  /** Failures since the last reset. */
  get attempts(): number {
    return this.failures;
  }

  /** The delay before the next try; each call counts one more failure. */
  next(): number {
    const delay = Math.min(this.maxMs, this.initialMs * this.factor ** this.failures);
    this.failures++;
    return delay;
  }

  reset(): void {
    this.failures = 0;
  }
}

const realClock: InformerClock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const timer = setTimeout(callback, ms);
    return () => {
      clearTimeout(timer);
    };
  },
};

const silent: InformerLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/** A list failure or a watch failure, as ListWatch reports it, for the log. */
function describeError(error: unknown): Record<string, unknown> {
  const { code, statusCode, body } = (error ?? {}) as {
    code?: unknown;
    statusCode?: unknown;
    body?: unknown;
  };
  const status = typeof code === 'number' ? code : statusCode;
  // ApiException's message dumps the whole response; the Status' message (or a plain-text body
  // such as "404 page not found") says it in one line.
  const statusMessage =
    typeof body === 'object' && body !== null ? (body as { message?: unknown }).message : body;
  const message =
    typeof statusMessage === 'string' && statusMessage.trim()
      ? statusMessage.trim().slice(0, 300)
      : error instanceof Error
        ? error.message.split('\n')[0]
        : String(error);
  return status === undefined ? { error: message } : { error: message, code: status };
}

/**
 * A {@link Watch} whose requests end at once when their run is over: ListWatch.stop() aborts only
 * the request it already holds, not one still waiting for its response headers.
 */
class RunWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly isCurrent: () => boolean,
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (!this.isCurrent()) {
      const controller = new AbortController();
      controller.abort();
      return controller;
    }
    const controller = await super.watch(path, queryParams, callback, done);
    if (!this.isCurrent()) controller.abort();
    return controller;
  }
}

/** Thrown into a superseded run's list so that its ListWatch stops instead of watching. */
class SupersededRun extends Error {
  override readonly name = 'SupersededRun';
}

/**
 * Lists a collection with a plain GET, returning the API server's JSON (as watch events are).
 * List items of built-in kinds come without apiVersion and kind; they get the list's.
 */
export async function listPath<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  path: string,
  options: { readonly labelSelector?: string; readonly timeoutMs?: number } = {},
): Promise<KubernetesListObject<T>> {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(cluster.server + path);
  if (options.labelSelector) url.searchParams.set('labelSelector', options.labelSelector);
  const request = new RequestContext(url.toString(), HttpMethod.GET);
  request.setHeaderParam('Accept', 'application/json');
  request.setSignal(AbortSignal.timeout(options.timeoutMs ?? 60_000));
  await kubeConfig.applySecurityAuthentication(request);
  const response = await new IsomorphicFetchHttpLibrary().send(request).toPromise();
  const text = await response.body.text();
  if (response.httpStatusCode !== 200) {
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    throw new ApiException(response.httpStatusCode, `list ${path}`, body, response.headers);
  }
  const list = JSON.parse(text) as KubernetesListObject<T>;
  const kind = list.kind?.replace(/List$/, '');
  for (const item of list.items) {
    item.apiVersion ??= list.apiVersion;
    item.kind ??= kind;
  }
  return list;
}

/**
 * Lists and watches one collection, keeps a cache of it and calls handlers on changes.
 *
 * - Any error from the list or the watch (other than 410 Gone, which ListWatch handles by
 *   re-listing) replaces the ListWatch after a backoff delay; the restart re-lists.
 * - Every `resyncMs` it re-lists: objects that changed or were missed are delivered, objects that
 *   are gone are deleted, and handlers see every object again as an update (with `old` the cached
 *   one, possibly of the same resourceVersion).
 * - Handlers run synchronously in event order; a handler that throws or rejects is logged, and does
 *   not stop the informer.
 *
 * Cached objects are shared: do not modify them.
 */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers = new Set<ChangeHandler<T>>();
  private readonly backoff: ExponentialBackoff;
  private readonly clock: InformerClock;
  private readonly logger: InformerLogger;
  private readonly name: string;
  private readonly resyncMs: number;
  private readonly listTimeoutMs: number;
  private readonly resetAfterMs: number;
  private readonly listFn: ListPromise<T>;
  /** Incremented whenever a run ends: callbacks of older runs are ignored. */
  private generation = 0;
  private running = false;
  private synced = false;
  /** Since a failure, until a list succeeds. */
  private failing = false;
  private current?: ListWatch<T>;
  /** When the current run's list succeeded; undefined before. */
  private listedAt?: number;
  private cancelTimer?: () => void;
  private syncWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];

  constructor(private readonly options: ResilientInformerOptions<T>) {
    this.clock = options.clock ?? realClock;
    this.logger = options.logger ?? silent;
    this.name = options.name ?? options.path;
    this.resyncMs = options.resyncMs ?? 5 * 60_000;
    this.listTimeoutMs = options.listTimeoutMs ?? 60_000;
    this.resetAfterMs = options.backoff?.resetAfterMs ?? 60_000;
    this.backoff = new ExponentialBackoff(options.backoff);
    this.listFn =
      options.list ??
      (() =>
        listPath<T>(options.kubeConfig, options.path, {
          labelSelector: options.labelSelector,
          timeoutMs: this.listTimeoutMs,
        }));
  }

  /** True once the first list has filled the cache; stays true across restarts. */
  get hasSynced(): boolean {
    return this.synced;
  }

  /** Whether {@link start} was called and {@link stop} was not. */
  get isRunning(): boolean {
    return this.running;
  }

  /** Starts listing and watching; does nothing if already running. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.logger.debug('informer starting', { informer: this.name });
    this.startRun();
  }

  /** Stops the watch and all timers; no handler is called afterwards. The cache is kept. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.endRun();
    for (const waiter of this.syncWaiters.splice(0))
      waiter.reject(new Error(`informer ${this.name} stopped before it synced`));
    this.logger.debug('informer stopped', { informer: this.name });
  }

  /** Resolves once {@link hasSynced}; rejects if the informer is stopped first or `signal` aborts. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    if (!this.running) return Promise.reject(new Error(`informer ${this.name} is not running`));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.syncWaiters = this.syncWaiters.filter((waiter) => waiter.resolve !== done);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push({
        resolve: done,
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      });
    });
  }

  /** The cached object, or undefined. Leave `namespace` empty for cluster-scoped objects. */
  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(namespace ? `${namespace}/${name}` : name);
  }

  /** The cached object with this {@link objectKey}, or undefined. */
  getByKey(key: string): T | undefined {
    return this.cache.get(key);
  }

  /** The cached objects, of one namespace or all. */
  list(namespace?: string): T[] {
    const all = [...this.cache.values()];
    return namespace === undefined
      ? all
      : all.filter((obj) => (obj.metadata?.namespace ?? '') === namespace);
  }

  /** Calls `handler` for every add, update and delete; returns a function that unregisters it. */
  onChange(handler: ChangeHandler<T>): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  onAdd(handler: (obj: T) => void | Promise<void>): () => void {
    return this.onChange((event, obj) => (event === 'add' ? handler(obj) : undefined));
  }

  /** `old` is the previously cached object; on a re-list it may be the same version. */
  onUpdate(handler: (obj: T, old: T) => void | Promise<void>): () => void {
    return this.onChange((event, obj, old) =>
      event === 'update' && old ? handler(obj, old) : undefined,
    );
  }

  /** `obj` is the last state seen: the watch's final object, or the cached one if a re-list found it gone. */
  onDelete(handler: (obj: T) => void | Promise<void>): () => void {
    return this.onChange((event, obj) => (event === 'delete' ? handler(obj) : undefined));
  }

  private startRun(): void {
    const generation = ++this.generation;
    const isCurrent = (): boolean => this.running && generation === this.generation;
    this.listedAt = undefined;
    const list = async (): Promise<KubernetesListObject<T>> => {
      const result = await this.listFn();
      if (!isCurrent()) throw new SupersededRun();
      this.replace(result.items);
      return result;
    };
    const watch = new RunWatch(this.options.kubeConfig, isCurrent);
    const informer = new ListWatch<T>(
      this.options.path,
      watch,
      list,
      false,
      this.options.labelSelector,
    );
    this.current = informer;
    informer.on('add', (obj) => {
      if (isCurrent()) this.upsert(obj);
    });
    informer.on('update', (obj) => {
      if (isCurrent()) this.upsert(obj);
    });
    informer.on('delete', (obj) => {
      if (isCurrent()) this.remove(obj);
    });
    informer.on('error', (error: unknown) => {
      if (isCurrent()) this.fail(error);
    });
    informer.on('connect', () => {
      if (isCurrent()) this.logger.debug('informer connecting', { informer: this.name });
    });
    // A list that never answers would leave the run hanging with no resync armed.
    this.setTimer(() => {
      if (isCurrent() && this.listedAt === undefined)
        this.fail(new Error(`list did not answer within ${this.listTimeoutMs} ms`));
    }, this.listTimeoutMs);
    informer.start().catch((error: unknown) => {
      if (isCurrent()) this.fail(error);
    });
  }

  /** Ends the current run: its callbacks are ignored from now on. */
  private endRun(): void {
    this.generation++;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const informer = this.current;
    this.current = undefined;
    // Its abort comes back as an 'error' callback, which the generation check ignores.
    void informer?.stop();
  }

  private setTimer(callback: () => void, ms: number): void {
    this.cancelTimer?.();
    this.cancelTimer = this.clock.setTimeout(callback, ms);
  }

  private fail(error: unknown): void {
    const healthyFor = this.listedAt === undefined ? undefined : this.clock.now() - this.listedAt;
    this.endRun();
    this.failing = true;
    if (healthyFor !== undefined && healthyFor >= this.resetAfterMs) this.backoff.reset();
    const delayMs = this.backoff.next();
    this.logger.warn('informer failed; restarting', {
      informer: this.name,
      ...describeError(error),
      attempt: this.backoff.attempts,
      delayMs,
    });
    this.setTimer(() => {
      if (!this.running) return;
      this.logger.info('informer restarting', {
        informer: this.name,
        attempt: this.backoff.attempts,
      });
      this.startRun();
    }, delayMs);
  }

  private resync(): void {
    this.logger.debug('informer re-listing', { informer: this.name });
    this.endRun();
    this.startRun();
  }

  /** A list result: the whole collection. */
  private replace(items: readonly T[]): void {
    const listed = new Set(items.map(objectKey));
    for (const [key, obj] of [...this.cache]) {
      if (listed.has(key)) continue;
      this.cache.delete(key);
      this.emit('delete', obj);
    }
    for (const obj of items) {
      const key = objectKey(obj);
      const old = this.cache.get(key);
      this.cache.set(key, withoutManagedFields(obj));
      if (old) this.emit('update', obj, old);
      else this.emit('add', obj);
    }
    this.listedAt = this.clock.now();
    if (this.resyncMs > 0) {
      this.setTimer(() => {
        this.resync();
      }, this.resyncMs);
    } else {
      this.cancelTimer?.();
      this.cancelTimer = undefined;
    }
    if (this.failing) {
      this.failing = false;
      this.logger.info('informer recovered', { informer: this.name, objects: this.cache.size });
    }
    if (!this.synced) {
      this.synced = true;
      this.logger.info('informer synced', { informer: this.name, objects: this.cache.size });
      for (const waiter of this.syncWaiters.splice(0)) waiter.resolve();
    }
  }

  /** A watch event, or ListWatch's replay of a list we already applied (same version: skipped). */
  private upsert(obj: T): void {
    const key = objectKey(obj);
    const old = this.cache.get(key);
    const version = obj.metadata?.resourceVersion;
    if (old && version !== undefined && old.metadata?.resourceVersion === version) return;
    this.cache.set(key, withoutManagedFields(obj));
    if (old) this.emit('update', obj, old);
    else this.emit('add', obj);
  }

  private remove(obj: T): void {
    const key = objectKey(obj);
    if (!this.cache.delete(key)) return;
    this.emit('delete', obj);
  }

  private emit(event: InformerEvent, obj: T, old?: T): void {
    for (const handler of [...this.handlers]) {
      try {
        const result = handler(event, obj, old);
        if (result instanceof Promise)
          result.catch((error: unknown) => {
            this.handlerFailed(event, obj, error);
          });
      } catch (error) {
        this.handlerFailed(event, obj, error);
      }
    }
  }

  private handlerFailed(event: InformerEvent, obj: T, error: unknown): void {
    this.logger.error('informer handler failed', {
      informer: this.name,
      event,
      object: objectKey(obj),
      ...describeError(error),
    });
  }
}

/**
 * `obj` without metadata.managedFields, which no reconciler reads and which is often the largest
 * part of an object (controller-runtime's caches drop it too).
 */
function withoutManagedFields<T extends KubernetesObject>(obj: T): T {
  if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
  return obj;
}
