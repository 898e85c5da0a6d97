// A mesh TCP connection after its handshake (mesh `connection.go` send/receive side, and the
// tcpSender/tcpReceiver of `protocol_crypto.go`): protocol messages (tag byte + body) go out
// framed and, with a password, sealed; inbound bytes are unframed, opened and delivered in
// order. It also keeps the connection alive: a heartbeat (tag 0) every 30 s, and a read
// deadline of 60 s that every complete inbound message extends.
//
// Framing depends on the negotiated version. v2: u32 BE length + message (framing.ts), at
// most 10 MiB on the wire. v1 (legacy): one long gob stream in which every message is a
// `[]byte` value; the feature map that opens it is handled by the handshake.
//
// Invariants: messages reach the handler in wire order, and none after close; any decode,
// decrypt or deadline failure closes the connection (the peer cannot resynchronise: sequence
// numbers are implicit); close() is idempotent and the close handler fires exactly once,
// after start(). The constructor does no I/O: start() takes over the transport, and what
// arrived between handshake and start() waits in the backlog.
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError, toWeaveError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { TcpCryptoPair } from './crypto.js';
import { FRAME_PREFIX_BYTES, MAX_TCP_MSG_BYTES, encodeFrame, ByteQueue, OutboundMessage } from './framing.js';
import { GobReader } from './gob/gob-bytes.js';
import { decodeGobDefinition, decodeGobStream } from './gob/gob-decoder.js';
import { encodeGobValue } from './gob/gob-encoder.js';
import { expectBytes, expectCount } from './gob/gob-expect.js';
import { GOB_BYTES } from './gob/gob-type.js';
import { ProtocolTag, checkProtocolTag, decodeProtocolMsg, type ProtocolMsg } from './protocol.js';
import type { MeshTransport } from './transport.js';

/** mesh `TCPHeartbeat`. */
export const TCP_HEARTBEAT_MS = 30_000;
/** mesh `extendReadDeadline`: twice the heartbeat. */
export const TCP_READ_TIMEOUT_MS = 2 * TCP_HEARTBEAT_MS;

/** Frames outgoing messages for one protocol version. */
export interface FrameSender {
  encode(msg: Uint8Array): Buffer;
  /** The frame of an unencrypted message, when the sender can use the one it carries (v2). */
  frameOf?(m: OutboundMessage): Buffer;
}

/**
 * What one inbound chunk completed: the messages before any fault, then the fault. Messages
 * that arrived intact before bad bytes are still delivered, as the original's receive loop
 * would have handled them one by one before failing.
 */
export interface FrameBatch {
  readonly frames: Buffer[];
  readonly error?: WeaveError;
}

/** Cuts inbound bytes into messages; after a fault it stays failed. */
export interface FrameReceiver {
  push(chunk: Uint8Array): FrameBatch;
  /**
   * Each message it returns is preceded, in its own buffer, by its protocol 2 length prefix, in
   * bytes nobody changes (a transport's chunk, or a copy of our own): so a message passed on
   * unchanged can be written as it came, prefix and all (OutboundMessage.received).
   */
  readonly prefixed?: boolean;
}

/** v2: mesh `lengthPrefixTCPSender`. */
export class LengthPrefixSender implements FrameSender {
  constructor(private readonly maxBytes = MAX_TCP_MSG_BYTES) {}
  encode(msg: Uint8Array): Buffer {
    return encodeFrame(msg, this.maxBytes);
  }
  frameOf(m: OutboundMessage): Buffer {
    return m.frame(this.maxBytes);
  }
}

// Gob spends a type id, a singleton delta and a length on each []byte value.
const GOB_VALUE_OVERHEAD_BYTES = 32;
// v1 peers define one type (the feature map); leave room for a few, refuse a flood.
const MAX_GOB_DEFINITION_BYTES = 64 * 1024;

/** v1: mesh `gobTCPSender`, each message a gob `[]byte` value in the stream. */
export class GobBytesSender implements FrameSender {
  constructor(private readonly maxBytes = MAX_TCP_MSG_BYTES) {}
  encode(msg: Uint8Array): Buffer {
    if (msg.length > this.maxBytes) {
      throw new WeaveError('INVALID_ARGUMENT', `outgoing message exceeds maximum size: ${msg.length} > ${this.maxBytes}`);
    }
    // []byte is a predefined type, so no definition is ever due: each value stands alone.
    return encodeGobValue(GOB_BYTES, Buffer.from(msg));
  }
}


/**
 * The feature map, the first message of a connection, at most: it comes before anything
 * authenticates the peer, and at the general limit (10 MiB) every connection in a handshake
 * could make us hold that much. A real one is a few hundred bytes.
 */
export const MAX_FEATURES_MSG_BYTES = 64 * 1024;

/**
 * v2: mesh `lengthPrefixTCPReceiver`; refuses a length over the limit before buffering it.
 * `firstMaxBytes` limits the first message (the feature map) alone.
 */
export class LengthPrefixReceiver implements FrameReceiver {
  readonly prefixed = true;
  private readonly queue = new ByteQueue();
  private failure: WeaveError | undefined;
  private received = 0;

  constructor(
    private readonly maxBytes = MAX_TCP_MSG_BYTES,
    private readonly firstMaxBytes = maxBytes,
  ) {}

  push(chunk: Uint8Array): FrameBatch {
    if (this.failure) return { frames: [], error: this.failure };
    const q = this.queue;
    q.push(chunk);
    const frames: Buffer[] = [];
    while (q.length >= FRAME_PREFIX_BYTES) {
      const len = ((q.byteAt(0) << 24) | (q.byteAt(1) << 16) | (q.byteAt(2) << 8) | q.byteAt(3)) >>> 0;
      const max = this.received === 0 ? this.firstMaxBytes : this.maxBytes;
      if (len > max) {
        this.failure = new WeaveError('DECODE_FAILED', `incoming message exceeds maximum size: ${len} > ${max}`);
        q.clear();
        return { frames, error: this.failure };
      }
      if (q.length < FRAME_PREFIX_BYTES + len) break;
      // Taken with its prefix (a view of the chunk, or one copy when it spans chunks), so the
      // message can be relayed as it came (FrameReceiver.prefixed).
      frames.push(q.take(FRAME_PREFIX_BYTES + len).subarray(FRAME_PREFIX_BYTES));
      this.received++;
    }
    return { frames };
  }
}

/**
 * v1: cuts a gob stream into its values, each a standalone gob stream that decodeGobStream reads
 * alone. The first value (the feature map, a user type) comes with the type definitions seen so
 * far; every later one must be a []byte (mesh `gobTCPReceiver` decodes into one, and Go's
 * decoder refuses any other wire type for it), which needs no definitions and comes out alone.
 * So each byte is decoded once: prepending every definition to every value cost time and memory
 * in proportion to definitions × values (81 KB of input made 262 MiB of streams). Definitions
 * are checked as they arrive, as Go's decoder does.
 */
export class GobStreamSplitter {
  private readonly queue = new ByteQueue();
  private readonly definitions: Buffer[] = [];
  private definitionBytes = 0;
  private values = 0;
  private failure: WeaveError | undefined;
  private readonly maxMessageBytes: number;

  private readonly firstMaxMessageBytes: number;

  /** `firstMaxValueBytes` limits the first value (the feature map) alone. */
  constructor(maxValueBytes = MAX_TCP_MSG_BYTES, firstMaxValueBytes = maxValueBytes) {
    this.maxMessageBytes = maxValueBytes + GOB_VALUE_OVERHEAD_BYTES;
    this.firstMaxMessageBytes = firstMaxValueBytes + GOB_VALUE_OVERHEAD_BYTES;
  }

  push(chunk: Uint8Array): FrameBatch {
    if (this.failure) return { frames: [], error: this.failure };
    this.queue.push(chunk);
    const out: Buffer[] = [];
    try {
      for (;;) {
        const q = this.queue;
        if (q.length < 1) break;
        const first = q.byteAt(0);
        let prefix = 1;
        let len = first;
        if (first >= 0x80) {
          const n = 256 - first;
          if (n > 8) throw new WeaveError('DECODE_FAILED', `gob: message length uses ${n} bytes`);
          prefix += n;
          if (q.length < prefix) break;
          len = 0;
          for (let i = 1; i < prefix; i++) len = len * 256 + q.byteAt(i);
        }
        if (len === 0) throw new WeaveError('DECODE_FAILED', 'gob: empty message');
        const max = this.values === 0 ? this.firstMaxMessageBytes : this.maxMessageBytes;
        if (len > max) throw new WeaveError('DECODE_FAILED', `incoming message exceeds maximum size: ${len} > ${max}`);
        if (q.length < prefix + len) break;
        const message = q.take(prefix + len);
        const typeId = new GobReader(message, prefix, message.length).intSmall('type id');
        if (typeId >= 0) {
          if (this.values++ === 0) out.push(this.definitions.length ? Buffer.concat([...this.definitions, message]) : message);
          else if (typeId === GOB_BYTES.id) out.push(message);
          else throw new WeaveError('DECODE_FAILED', `gob: v1 message of type id ${typeId}, not []byte`);
          continue;
        }
        this.definitionBytes += message.length;
        if (this.definitionBytes > MAX_GOB_DEFINITION_BYTES) throw new WeaveError('DECODE_FAILED', 'gob: too many type definitions');
        decodeGobDefinition(message);
        this.definitions.push(message);
      }
    } catch (e) {
      this.failure = toWeaveError(e, 'DECODE_FAILED');
      this.queue.clear();
      return { frames: out, error: this.failure };
    }
    return { frames: out };
  }
}

/** The `[]byte` a standalone v1 value stream carries (mesh `gobTCPReceiver`). */
export function decodeGobBytesValue(stream: Uint8Array): Buffer {
  const values = decodeGobStream(stream);
  expectCount(values, 1, 'v1 message');
  return expectBytes(values[0] as (typeof values)[number], 'v1 message');
}

/** v1 receiver for messages after the feature map. */
export class GobBytesReceiver implements FrameReceiver {
  private failure: WeaveError | undefined;

  constructor(private readonly splitter: GobStreamSplitter) {}

  push(chunk: Uint8Array): FrameBatch {
    return this.decode(this.splitter.push(chunk));
  }

  /** Turns a batch of value streams into the messages they carry. */
  decode(batch: FrameBatch): FrameBatch {
    if (this.failure) return { frames: [], error: this.failure };
    const frames: Buffer[] = [];
    for (const v of batch.frames) {
      try {
        frames.push(decodeGobBytesValue(v));
      } catch (e) {
        this.failure = toWeaveError(e, 'DECODE_FAILED');
        return { frames, error: this.failure };
      }
    }
    if (batch.error) this.failure = batch.error;
    return batch.error ? { frames, error: batch.error } : { frames };
  }
}

/** What arrived after the handshake and before start(): frames (still sealed) and an end. */
export class InboundBacklog {
  readonly frames: Buffer[] = [];
  error: WeaveError | undefined;
}

export interface MessageConnDeps {
  readonly transport: MeshTransport;
  readonly clock: Clock;
  readonly logger?: Logger;
}

export interface MessageConnOptions {
  /** Negotiated protocol version (1 or 2). */
  readonly version: number;
  readonly sender: FrameSender;
  readonly receiver: FrameReceiver;
  /** Present when the connection is encrypted. */
  readonly crypto?: TcpCryptoPair;
  readonly backlog?: InboundBacklog;
  readonly heartbeatIntervalMs?: number;
  readonly readTimeoutMs?: number;
}

export interface MessageHandlers {
  /** One message; unknown tags are passed on for the caller to ignore. Throwing closes the connection. */
  onMessage(msg: ProtocolMsg): void;
  /** Once, after start(): the error, or undefined when close() was called without one. */
  onClose(err: WeaveError | undefined): void;
}

type State = 'ready' | 'running' | 'closed';

export class MessageConn {
  readonly version: number;
  private state: State = 'ready';
  private handlers: MessageHandlers | undefined;
  private heartbeat: TimerHandle | undefined;
  private deadline: TimerHandle | undefined;
  private lastReceiveMs = 0;
  private closeError: WeaveError | undefined;
  private readonly log: Logger;
  private readonly heartbeatMs: number;
  private readonly readTimeoutMs: number;
  private sent = 0;
  private received = 0;

  constructor(
    private readonly deps: MessageConnDeps,
    private readonly opts: MessageConnOptions,
  ) {
    this.version = opts.version;
    this.log = deps.logger ?? silentLogger;
    this.heartbeatMs = opts.heartbeatIntervalMs ?? TCP_HEARTBEAT_MS;
    this.readTimeoutMs = opts.readTimeoutMs ?? TCP_READ_TIMEOUT_MS;
  }

  get encrypted(): boolean {
    return this.opts.crypto !== undefined;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Why the connection closed, once it has. */
  get error(): WeaveError | undefined {
    return this.closeError;
  }

  get remoteAddress(): string {
    return this.deps.transport.remoteAddress;
  }

  get localAddress(): string {
    return this.deps.transport.localAddress;
  }

  get messagesSent(): number {
    return this.sent;
  }

  get messagesReceived(): number {
    return this.received;
  }

  /** Takes over the transport, delivers the backlog, starts heartbeats and the read deadline. */
  start(handlers: MessageHandlers): void {
    if (this.state !== 'ready') {
      if (this.state === 'running') return;
      throw new WeaveError('NOT_RUNNING', 'connection already closed');
    }
    this.state = 'running';
    this.handlers = handlers;
    const { transport, clock } = this.deps;
    transport.onData((chunk) => this.receive(chunk));
    transport.onClose((err) => this.fail(new WeaveError('IO_FAILED', err ? `connection failed: ${err.message}` : 'connection closed by peer', { cause: err })));
    this.lastReceiveMs = clock.now();
    this.armDeadline(this.readTimeoutMs);
    this.heartbeat = clock.setInterval(() => this.sendHeartbeat(), this.heartbeatMs);
    const backlog = this.opts.backlog;
    if (backlog) {
      this.deliverFrames(backlog.frames.splice(0));
      if (backlog.error) this.fail(backlog.error);
    }
  }

  /**
   * Sends one message. NOT_RUNNING once closed; a message over the size limit closes the
   * connection (as the original) and throws INVALID_ARGUMENT.
   */
  send(tag: number, body?: Uint8Array): void {
    if (this.state === 'closed') throw new WeaveError('NOT_RUNNING', 'connection closed', { cause: this.closeError });
    let m: OutboundMessage;
    try {
      checkProtocolTag(tag);
      m = OutboundMessage.of(tag, body);
    } catch (e) {
      const err = toWeaveError(e, 'INVALID_ARGUMENT');
      this.fail(err);
      throw err;
    }
    this.sendMessage(m);
  }

  /**
   * Sends a prepared message (see OutboundMessage: one frame however many connections send it,
   * where they are unencrypted). Errors as send().
   */
  sendMessage(m: OutboundMessage): void {
    if (this.state === 'closed') throw new WeaveError('NOT_RUNNING', 'connection closed', { cause: this.closeError });
    let frame: Buffer;
    try {
      const { crypto, sender } = this.opts;
      if (!crypto && sender.frameOf) frame = sender.frameOf(m);
      else frame = sender.encode(crypto ? crypto.sender.seal(m.message) : m.message);
    } catch (e) {
      const err = toWeaveError(e, 'INVALID_ARGUMENT');
      this.fail(err);
      throw err;
    }
    this.sent++;
    this.deps.transport.write(frame);
  }

  /** Closes the connection; idempotent. `err` is what the close handler reports. */
  close(err?: WeaveError): void {
    if (this.state === 'closed') return;
    const wasRunning = this.state === 'running';
    this.state = 'closed';
    this.closeError = err;
    this.heartbeat?.cancel();
    this.deadline?.cancel();
    this.deps.transport.close();
    if (wasRunning) {
      const h = this.handlers;
      this.handlers = undefined;
      h?.onClose(err);
    }
  }

  private fail(err: WeaveError): void {
    if (this.state === 'closed') return;
    this.log.debug({ remote: this.remoteAddress, code: err.code, err: err.message }, 'connection failed');
    this.close(err);
  }

  private sendHeartbeat(): void {
    if (this.state !== 'running') return;
    try {
      this.send(ProtocolTag.Heartbeat);
    } catch {
      // send() has closed the connection already
    }
  }

  private armDeadline(delayMs: number): void {
    this.deadline = this.deps.clock.setTimeout(() => this.checkDeadline(), delayMs);
  }

  // One timer re-armed lazily: cheaper than rescheduling on every message.
  private checkDeadline(): void {
    if (this.state !== 'running') return;
    const idle = this.deps.clock.now() - this.lastReceiveMs;
    if (idle >= this.readTimeoutMs) {
      this.fail(new WeaveError('TIMEOUT', `no message received for ${Math.round(idle / 1000)}s (read deadline ${this.readTimeoutMs / 1000}s)`));
      return;
    }
    this.armDeadline(this.readTimeoutMs - idle);
  }

  private receive(chunk: Buffer): void {
    if (this.state !== 'running') return;
    const { frames, error } = this.opts.receiver.push(chunk);
    this.deliverFrames(frames);
    if (error) this.fail(error);
  }

  private deliverFrames(frames: Buffer[]): void {
    for (const frame of frames) {
      if (this.state !== 'running') return;
      let plain: Buffer;
      try {
        plain = this.opts.crypto ? this.opts.crypto.receiver.open(frame) : frame;
      } catch (e) {
        this.fail(toWeaveError(e, 'DECODE_FAILED'));
        return;
      }
      this.lastReceiveMs = this.deps.clock.now();
      this.received++;
      // Unencrypted, the message as it came (prefix before it) may be passed on unchanged.
      const msg = decodeProtocolMsg(plain, !this.opts.crypto && this.opts.receiver.prefixed === true);
      if (msg === undefined) {
        this.log.debug({ remote: this.remoteAddress }, 'ignoring blank msg');
        continue;
      }
      try {
        this.handlers?.onMessage(msg);
      } catch (e) {
        this.fail(toWeaveError(e));
        return;
      }
    }
  }
}
