/**
 * Structured logs: one JSON object per line (time, level, msg, fields), the shape log collectors
 * parse without configuration. Records below the threshold cost one comparison.
 */
import type { LogLevel } from './config.js';

const RANK: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Where finished lines go; injectable for tests. */
export type LogSink = (line: string) => void;

/** A leveled JSON-lines logger with fields bound at creation. */
export class Logger {
  private readonly threshold: number;

  constructor(
    level: LogLevel,
    private readonly sink: LogSink = (line) => process.stderr.write(line),
    private readonly fields: Readonly<Record<string, unknown>> = {},
    private readonly now: () => Date = () => new Date(),
  ) {
    this.threshold = RANK[level];
  }

  /** True when records of `level` are written (to skip building costly fields). */
  enabled(level: LogLevel): boolean {
    return RANK[level] >= this.threshold;
  }

  log(level: LogLevel, msg: string, fields: Readonly<Record<string, unknown>> = {}): void {
    if (!this.enabled(level)) return;
    const record = { time: this.now().toISOString(), level, msg, ...this.fields, ...fields };
    this.sink(`${JSON.stringify(record)}\n`);
  }

  debug(msg: string, fields?: Readonly<Record<string, unknown>>): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: Readonly<Record<string, unknown>>): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: Readonly<Record<string, unknown>>): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: Readonly<Record<string, unknown>>): void {
    this.log('error', msg, fields);
  }
}
