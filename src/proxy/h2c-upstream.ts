// `--upstream-protocol h2c`: the app is reached over cleartext HTTP/2 (prior knowledge), as gRPC servers
// expect. One session carries every request; it is opened on first use and again after it ends (the app
// restarted, or sent GOAWAY).
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';

export class H2cUpstream {
  private session: ClientHttp2Session | undefined;
  /** Sessions opened so far: a request that did not open one reused the last. */
  sessionsOpened = 0;

  constructor(private readonly origin: URL) {}

  request(headers: OutgoingHttpHeaders, endStream: boolean): ClientHttp2Stream {
    let session = this.session;
    if (!session || session.closed || session.destroyed) {
      // Loaded here, not imported: only h2c sidecars need node:http2 (h2-error-codes.ts says why).
      session = process.getBuiltinModule('node:http2').connect(this.origin.origin);
      this.sessionsOpened++;
      const opened = session;
      // Errors surface on the streams; a failed session is simply replaced on the next request.
      opened.on('error', () => {});
      opened.on('goaway', () => {
        if (this.session === opened) this.session = undefined;
      });
      opened.on('close', () => {
        if (this.session === opened) this.session = undefined;
      });
      this.session = opened;
    }
    return session.request(headers, { endStream });
  }

  close(): void {
    this.session?.destroy();
    this.session = undefined;
  }
}
