// The byte stream a mesh TCP connection runs over (mesh's `protocolIntroConn` idea): just
// enough of a socket for the handshake and the message connection, so both run over
// in-memory pipes in tests and over a net.Socket adapter in production.
//
// Contract for implementations:
// - One data handler and one close handler at a time: installing a new one replaces the old,
//   which is how the handshake hands the stream over to the message connection without a gap.
// - Bytes that arrive while no data handler is installed are held (a paused socket) and
//   delivered, in order, once one is.
// - Handlers are never called synchronously from inside write() or close().
// - The close handler fires at most once, whoever closed the stream; `err` is set when the
//   stream failed rather than ended.
// - close() is idempotent; writes after close are dropped.
// - Buffers are handed over, not lent: a chunk given to the data handler is never reused or
//   changed by the transport (the receiver keeps views of it), and a buffer given to write() is
//   never changed by the writer afterwards (one frame may be written to many connections).

export interface MeshTransport {
  /** `host:port` of the remote end, for logs and connection summaries. */
  readonly remoteAddress: string;
  readonly localAddress: string;
  /** Queues bytes for sending, in order; never blocks. */
  write(bytes: Uint8Array): void;
  /** Installs the data handler (replacing any previous one). */
  onData(handler: (chunk: Buffer) => void): void;
  /** Installs the close handler (replacing any previous one). */
  onClose(handler: (err?: Error) => void): void;
  close(): void;
}
