// What a start opened, to be closed in the reverse order: one stack for a start that fails halfway and for
// a stop, so that the two can never disagree about what to close (listeners first, then what fed them).
export class Teardown {
  private readonly closers: (() => unknown)[] = [];

  /** Registers the closing of something just opened. */
  defer(close: () => unknown): void {
    this.closers.push(close);
  }

  /** Closes everything, newest first. A closer that fails does not stop the others; the first error is thrown. */
  async closeAll(): Promise<void> {
    let failure: unknown;
    for (let close = this.closers.pop(); close; close = this.closers.pop()) {
      try {
        await close();
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  }
}
