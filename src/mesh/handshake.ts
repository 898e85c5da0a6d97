// The protocol intro of a mesh TCP connection (mesh `protocol.go` DoIntro, and the feature
// handling of `connection.go`), run over a MeshTransport with an injected clock.
//
// Both sides write `weave` + min + max version at once and negotiate the highest common
// version within a 10 s header deadline; the rest of the intro must finish within the 60 s
// read deadline.
// - v2: each side writes an encryption flag (0, or 1 + a fresh Curve25519 public key when a
//   password is set), then length-prefixed messages, sealed when encrypted. The first message
//   each way is the gob feature map, so on an encrypted connection the features are secret
//   and a wrong password fails right there ("Unable to decrypt TCP msg").
// - v1 (legacy): one gob stream; its first value is the feature map in the clear, cut down to
//   the v1 keys, with the public key as hex in `PublicKey`; later values are `[]byte` messages.
// The remote's features are then checked and parsed (name flavour, name, UID, ConnID, ...).
// Success yields the result plus a MessageConn that owns the transport for the rest of the
// connection; failure closes the transport and rejects with a WeaveError.
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError, toWeaveError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { formatPeerName, tryParsePeerName, type PeerName } from '../core/peer-name.js';
import { BOX_KEY_BYTES, formSessionKey, generateBoxKeyPair, tcpCryptoPair, type BoxKeyPair, type TcpCryptoPair } from './crypto.js';
import { checkRequiredFeatures, decodeFeatures, encodeFeatures } from './features.js';
import { MAX_TCP_MSG_BYTES } from './framing.js';
import {
  GobBytesReceiver, GobBytesSender, GobStreamSplitter, InboundBacklog, LengthPrefixReceiver, LengthPrefixSender, MAX_FEATURES_MSG_BYTES, MessageConn,
  TCP_HEARTBEAT_MS, TCP_READ_TIMEOUT_MS, type FrameBatch, type FrameReceiver, type FrameSender,
} from './message-conn.js';
import {
  PROTOCOL_HEADER_BYTES, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION, decodeProtocolHeader, encodeEncryptionFlag, encodeProtocolHeader,
  negotiateProtocolVersion, tryDecodeEncryptionFlag,
} from './protocol.js';
import type { MeshTransport } from './transport.js';

/** mesh `HeaderTimeout`. */
export const HEADER_TIMEOUT_MS = 10_000;
/** mesh `PeerNameFlavour` of weave's build. */
export const PEER_NAME_FLAVOUR = 'mac';
/** mesh `ProtocolV1Features`: the only keys a v1 intro carries (it is never encrypted). */
export const PROTOCOL_V1_FEATURES: readonly string[] = Object.freeze(['ConnID', 'Name', 'NickName', 'PeerNameFlavour', 'UID']);
/** mesh `PeerShortIDBits`. */
export const PEER_SHORT_ID_BITS = 12;

// The original's texts (mesh ErrExpectedCrypto / ErrExpectedNoCrypto), typo included, so that
// logs read the same on both implementations.
export const ERR_EXPECTED_CRYPTO = 'password specified, but peer requested an unencrypted connection';
export const ERR_EXPECTED_NO_CRYPTO = 'no password specificed, but peer requested an encrypted connection';

const CORE_FEATURES = new Set(['PeerNameFlavour', 'Name', 'NickName', 'ShortID', 'UID', 'ConnID', 'Trusted', 'PublicKey']);
const UINT64_MAX = (1n << 64n) - 1n;

export interface HandshakeDeps {
  readonly transport: MeshTransport;
  readonly clock: Clock;
  /** Cryptographic randomness: the connection id and the ephemeral key pair come from it. */
  readonly randomBytes: (n: number) => Buffer;
  readonly logger?: Logger;
}

export interface HandshakeOptions {
  /** We dialled the connection (sets the nonce polarity). */
  readonly outbound: boolean;
  readonly name: PeerName;
  readonly nickName: string;
  readonly uid: bigint;
  readonly shortId?: number;
  /** Encrypt with this password; undefined or empty means plain, as weaver treats `--password ""`. */
  readonly password?: Uint8Array | string;
  /** Whether the remote's address is in a trusted subnet (sent as our `Trusted`). */
  readonly trustRemote?: boolean;
  /** More features, e.g. `Overlays`; may not override the ones the handshake owns. */
  readonly extraFeatures?: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** `--min-protocol-version`; default 1. */
  readonly minVersion?: number;
  readonly maxVersion?: number;
  /** Our ConnID; random by default. */
  readonly connId?: bigint;
  readonly headerTimeoutMs?: number;
  readonly readTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly maxMessageBytes?: number;
  readonly signal?: AbortSignal;
}

export interface RemoteIntro {
  readonly name: PeerName;
  readonly nickName: string;
  readonly uid: bigint;
  readonly shortId: number | undefined;
  readonly connId: bigint;
  /** The remote trusts us (its `Trusted` feature; absent in v1 means false). */
  readonly trusted: boolean;
  /** Everything it sent (after the v1 filter). */
  readonly features: ReadonlyMap<string, string>;
}

export interface HandshakeResult {
  readonly version: number;
  readonly outbound: boolean;
  readonly remote: RemoteIntro;
  readonly localConnId: bigint;
  /** Local XOR remote ConnID: the same on both ends; tie-breaks duplicates, tags sleeve heartbeats. */
  readonly connUid: bigint;
  /** Set when encrypted; mesh hands it to the overlay only when `untrusted`. */
  readonly sessionKey: Buffer | undefined;
  readonly trustRemote: boolean;
  /** mesh `Untrusted()`: we do not trust the remote, or it does not trust us. */
  readonly untrusted: boolean;
}

export interface HandshakeOutcome {
  readonly result: HandshakeResult;
  /** Owns the transport from here on; call start() once the connection is registered. */
  readonly conn: MessageConn;
}

/** Runs the intro; resolves once both feature maps are exchanged and the remote's check out. */
export function runHandshake(deps: HandshakeDeps, opts: HandshakeOptions): Promise<HandshakeOutcome> {
  let hs: Handshake;
  try {
    hs = new Handshake(deps, opts);
  } catch (e) {
    deps.transport.close();
    return Promise.reject(toWeaveError(e, 'INVALID_ARGUMENT'));
  }
  return hs.run();
}

/** Go `strconv.ParseUint(s, 10, bits)`. */
function parseDecimalUint(s: string, bits: number, what: string): bigint {
  if (!/^[0-9]{1,20}$/.test(s)) throw new WeaveError('DECODE_FAILED', `${what}: invalid syntax "${s}"`);
  const v = BigInt(s);
  if (v > (1n << BigInt(bits)) - 1n) throw new WeaveError('DECODE_FAILED', `${what}: value out of range "${s}"`);
  return v;
}

/** Go `strconv.ParseBool`. */
function parseGoBool(s: string, what: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  throw new WeaveError('DECODE_FAILED', `${what}: invalid syntax "${s}"`);
}

/** mesh `parseFeatures`: the remote peer as its features describe it. */
export function parseRemoteFeatures(features: ReadonlyMap<string, string>): Omit<RemoteIntro, 'features'> {
  checkRequiredFeatures(features);
  const get = (k: string) => features.get(k) ?? '';
  const flavour = get('PeerNameFlavour');
  if (flavour !== PEER_NAME_FLAVOUR) {
    throw new WeaveError('INCOMPATIBLE_VERSION', `Peer name flavour mismatch (ours: '${PEER_NAME_FLAVOUR}', theirs: '${flavour}')`);
  }
  const name = tryParsePeerName(get('Name'));
  if (name === undefined) throw new WeaveError('DECODE_FAILED', `invalid peer name "${get('Name')}"`);
  const shortIdText = features.get('ShortID');
  const shortId = shortIdText === undefined ? undefined : Number(parseDecimalUint(shortIdText, PEER_SHORT_ID_BITS, 'ShortID'));
  const trustedText = features.get('Trusted');
  const trusted = trustedText === undefined ? false : parseGoBool(trustedText, 'Trusted');
  return {
    name,
    nickName: get('NickName'),
    uid: parseDecimalUint(get('UID'), 64, 'UID'),
    shortId,
    connId: parseDecimalUint(get('ConnID'), 64, 'ConnID'),
    trusted,
  };
}

type Phase = 'header' | 'flag' | 'features' | 'v1-features' | 'done' | 'failed';

class Handshake {
  private phase: Phase = 'header';
  private pending: Buffer = Buffer.alloc(0);
  private timer: TimerHandle | undefined;
  private resolve!: (o: HandshakeOutcome) => void;
  private reject!: (e: WeaveError) => void;
  private version = 0;
  private keyPair: BoxKeyPair | undefined;
  private crypto: TcpCryptoPair | undefined;
  private sessionKey: Buffer | undefined;
  private sender: FrameSender | undefined;
  private receiver: FrameReceiver | undefined;
  private v1Splitter: GobStreamSplitter | undefined;
  private readonly backlog = new InboundBacklog();
  private readonly password: Buffer | undefined;
  private readonly localConnId: bigint;
  private readonly features: Map<string, string>;
  private readonly maxMessageBytes: number;
  private readonly log: Logger;
  private readonly onAbort = () => this.fail(new WeaveError('CANCELLED', 'handshake cancelled'));

  constructor(
    private readonly deps: HandshakeDeps,
    private readonly opts: HandshakeOptions,
  ) {
    this.log = deps.logger ?? silentLogger;
    const pw = opts.password === undefined ? undefined : Buffer.from(opts.password);
    this.password = pw !== undefined && pw.length > 0 ? pw : undefined;
    this.maxMessageBytes = opts.maxMessageBytes ?? MAX_TCP_MSG_BYTES;
    this.localConnId = opts.connId ?? Buffer.from(deps.randomBytes(8)).readBigUInt64BE(0);
    if (this.localConnId < 0n || this.localConnId > UINT64_MAX) throw new WeaveError('INVALID_ARGUMENT', 'connId must be a uint64');
    if (opts.uid < 0n || opts.uid > UINT64_MAX) throw new WeaveError('INVALID_ARGUMENT', 'uid must be a uint64');
    if (opts.shortId !== undefined && !(Number.isInteger(opts.shortId) && opts.shortId >= 0 && opts.shortId < 2 ** PEER_SHORT_ID_BITS)) {
      throw new WeaveError('INVALID_ARGUMENT', `shortId ${opts.shortId} does not fit ${PEER_SHORT_ID_BITS} bits`);
    }
    const { min, max } = this.ourVersions();
    if (!(Number.isInteger(min) && Number.isInteger(max) && PROTOCOL_MIN_VERSION <= min && min <= max && max <= PROTOCOL_MAX_VERSION)) {
      throw new WeaveError('INVALID_ARGUMENT', `protocol versions ${min}..${max} outside the supported ${PROTOCOL_MIN_VERSION}..${PROTOCOL_MAX_VERSION}`);
    }
    this.features = this.makeFeatures();
  }

  /** mesh `makeFeatures` plus the overlay's AddFeaturesTo. */
  private makeFeatures(): Map<string, string> {
    const o = this.opts;
    const out = new Map<string, string>();
    const extra = o.extraFeatures instanceof Map ? [...o.extraFeatures] : Object.entries(o.extraFeatures ?? {});
    for (const [k, v] of extra) {
      if (CORE_FEATURES.has(k)) throw new WeaveError('INVALID_ARGUMENT', `feature ${k} is set by the handshake`);
      out.set(k, v);
    }
    out.set('PeerNameFlavour', PEER_NAME_FLAVOUR);
    out.set('Name', formatPeerName(o.name));
    out.set('NickName', o.nickName);
    if (o.shortId !== undefined) out.set('ShortID', String(o.shortId));
    out.set('UID', o.uid.toString());
    out.set('ConnID', this.localConnId.toString());
    out.set('Trusted', String(o.trustRemote ?? false));
    return out;
  }

  run(): Promise<HandshakeOutcome> {
    const promise = new Promise<HandshakeOutcome>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    const { transport } = this.deps;
    const signal = this.opts.signal;
    if (signal?.aborted) {
      this.onAbort();
      return promise;
    }
    signal?.addEventListener('abort', this.onAbort, { once: true });
    transport.onData((chunk) => this.onData(chunk));
    transport.onClose((err) => this.onClose(err));
    this.armTimer(this.opts.headerTimeoutMs ?? HEADER_TIMEOUT_MS, 'timed out waiting for remote protocol header');
    try {
      transport.write(encodeProtocolHeader(this.ourVersions()));
    } catch (e) {
      this.fail(toWeaveError(e, 'INVALID_ARGUMENT'));
    }
    return promise;
  }

  private ourVersions() {
    return { min: this.opts.minVersion ?? PROTOCOL_MIN_VERSION, max: this.opts.maxVersion ?? PROTOCOL_MAX_VERSION };
  }

  private armTimer(ms: number, what: string): void {
    this.timer?.cancel();
    this.timer = this.deps.clock.setTimeout(() => this.fail(new WeaveError('TIMEOUT', what)), ms);
  }

  private onClose(err: Error | undefined): void {
    if (this.phase === 'done') {
      this.backlog.error ??= new WeaveError('IO_FAILED', err ? `connection failed: ${err.message}` : 'connection closed by peer', { cause: err });
      return;
    }
    if (this.phase === 'header') {
      const n = this.pending.length;
      const msg = n === 0
        ? 'failed to receive remote protocol header: EOF'
        : `received incomplete remote protocol header (${n} octets instead of ${PROTOCOL_HEADER_BYTES}): [${[...this.pending].join(' ')}]; error: EOF`;
      this.fail(new WeaveError('IO_FAILED', msg, { cause: err }));
      return;
    }
    this.fail(new WeaveError('IO_FAILED', err ? `connection failed during handshake: ${err.message}` : 'connection closed during handshake: EOF', { cause: err }));
  }

  private onData(chunk: Buffer): void {
    if (this.phase === 'failed') return;
    if (this.phase === 'done') {
      if (!this.backlog.error) this.toBacklog((this.receiver as FrameReceiver).push(chunk));
      return;
    }
    try {
      this.step(chunk);
    } catch (e) {
      this.fail(toWeaveError(e, 'DECODE_FAILED'));
    }
  }

  private toBacklog(batch: FrameBatch): void {
    this.backlog.frames.push(...batch.frames);
    this.backlog.error ??= batch.error;
  }

  private step(chunk: Buffer): void {
    if (this.phase === 'features') return this.onFeatureFrames((this.receiver as FrameReceiver).push(chunk));
    if (this.phase === 'v1-features') return this.onV1Values((this.v1Splitter as GobStreamSplitter).push(chunk));
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.phase === 'header') {
      if (this.pending.length < PROTOCOL_HEADER_BYTES) return;
      const theirs = decodeProtocolHeader(this.pending);
      this.version = negotiateProtocolVersion(this.ourVersions(), theirs);
      this.pending = this.pending.subarray(PROTOCOL_HEADER_BYTES);
      // Go: the header deadline ends here; the rest of the intro gets the read deadline.
      this.armTimer(this.opts.readTimeoutMs ?? TCP_READ_TIMEOUT_MS, 'timed out during protocol handshake');
      if (this.password) this.keyPair = generateBoxKeyPair(this.deps.randomBytes);
      this.log.debug({ remote: this.deps.transport.remoteAddress, version: this.version, theirs }, 'protocol version negotiated');
      if (this.version === 1) return this.startV1();
      if (this.version !== 2) throw new WeaveError('INCOMPATIBLE_VERSION', `unhandled protocol version ${this.version}`);
      this.deps.transport.write(encodeEncryptionFlag(this.keyPair?.publicKey));
      this.phase = 'flag';
    }
    if (this.phase === 'flag') {
      const flag = tryDecodeEncryptionFlag(this.pending);
      if (flag === undefined) return;
      if (flag.encrypted && !this.keyPair) throw new WeaveError('INVALID_CONFIG', ERR_EXPECTED_NO_CRYPTO);
      if (!flag.encrypted && this.keyPair) throw new WeaveError('INVALID_CONFIG', ERR_EXPECTED_CRYPTO);
      if (flag.encrypted) this.setupCrypto(flag.publicKey);
      const rest = this.pending.subarray(flag.bytes);
      this.pending = Buffer.alloc(0);
      this.sender = new LengthPrefixSender(this.maxMessageBytes);
      this.receiver = new LengthPrefixReceiver(this.maxMessageBytes, Math.min(this.maxMessageBytes, MAX_FEATURES_MSG_BYTES));
      const featureMsg = encodeFeatures(this.features);
      this.deps.transport.write(this.sender.encode(this.crypto ? this.crypto.sender.seal(featureMsg) : featureMsg));
      this.phase = 'features';
      if (rest.length > 0) this.onFeatureFrames(this.receiver.push(rest));
    }
  }

  private setupCrypto(remotePublicKey: Buffer): void {
    const kp = this.keyPair as BoxKeyPair;
    this.sessionKey = formSessionKey(remotePublicKey, kp.secretKey, this.password as Buffer);
    this.crypto = tcpCryptoPair(this.sessionKey, this.opts.outbound);
  }

  /** The first message is the feature map; anything after it waits for the MessageConn. */
  private onFeatureFrames(batch: FrameBatch): void {
    const [first, ...rest] = batch.frames;
    if (first === undefined) {
      if (batch.error) throw batch.error;
      return;
    }
    const plain = this.crypto ? this.crypto.receiver.open(first) : first;
    this.finish(decodeFeatures(plain), { frames: rest, error: batch.error });
  }

  private startV1(): void {
    const ours = new Map<string, string>();
    for (const k of PROTOCOL_V1_FEATURES) {
      const v = this.features.get(k);
      if (v !== undefined) ours.set(k, v);
    }
    if (this.keyPair) ours.set('PublicKey', this.keyPair.publicKey.toString('hex'));
    this.deps.transport.write(encodeFeatures(ours));
    this.sender = new GobBytesSender(this.maxMessageBytes);
    this.v1Splitter = new GobStreamSplitter(this.maxMessageBytes, Math.min(this.maxMessageBytes, MAX_FEATURES_MSG_BYTES));
    this.receiver = new GobBytesReceiver(this.v1Splitter);
    this.phase = 'v1-features';
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    if (rest.length > 0) this.onV1Values(this.v1Splitter.push(rest));
  }

  private onV1Values(batch: FrameBatch): void {
    const [first, ...rest] = batch.frames;
    if (first === undefined) {
      if (batch.error) throw batch.error;
      return;
    }
    const theirs = decodeFeatures(first);
    const key = theirs.get('PublicKey');
    if (!this.keyPair && key !== undefined) throw new WeaveError('INVALID_CONFIG', ERR_EXPECTED_NO_CRYPTO);
    if (this.keyPair) {
      if (key === undefined) throw new WeaveError('INVALID_CONFIG', ERR_EXPECTED_CRYPTO);
      if (!/^[0-9a-fA-F]*$/.test(key) || key.length !== 2 * BOX_KEY_BYTES) throw new WeaveError('DECODE_FAILED', `bad PublicKey feature "${key}"`);
      this.setupCrypto(Buffer.from(key, 'hex'));
    }
    const filtered = new Map<string, string>();
    for (const k of PROTOCOL_V1_FEATURES) {
      const v = theirs.get(k);
      if (v !== undefined) filtered.set(k, v);
    }
    this.finish(filtered, (this.receiver as GobBytesReceiver).decode({ frames: rest, error: batch.error }));
  }

  private finish(remoteFeatures: Map<string, string>, later: FrameBatch): void {
    const remote = parseRemoteFeatures(remoteFeatures);
    const trustRemote = this.opts.trustRemote ?? false;
    const result: HandshakeResult = {
      version: this.version,
      outbound: this.opts.outbound,
      remote: { ...remote, features: remoteFeatures },
      localConnId: this.localConnId,
      connUid: this.localConnId ^ remote.connId,
      sessionKey: this.sessionKey,
      trustRemote,
      untrusted: !trustRemote || !remote.trusted,
    };
    this.toBacklog(later);
    const conn = new MessageConn(
      { transport: this.deps.transport, clock: this.deps.clock, logger: this.log },
      {
        version: this.version,
        sender: this.sender as FrameSender,
        receiver: this.receiver as FrameReceiver,
        crypto: this.crypto,
        backlog: this.backlog,
        heartbeatIntervalMs: this.opts.heartbeatIntervalMs ?? TCP_HEARTBEAT_MS,
        readTimeoutMs: this.opts.readTimeoutMs ?? TCP_READ_TIMEOUT_MS,
      },
    );
    this.phase = 'done';
    this.cleanup();
    this.resolve({ result, conn });
  }

  private cleanup(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.opts.signal?.removeEventListener('abort', this.onAbort);
  }

  private fail(err: WeaveError): void {
    if (this.phase === 'done' || this.phase === 'failed') return;
    this.phase = 'failed';
    this.cleanup();
    this.log.debug({ remote: this.deps.transport.remoteAddress, code: err.code, err: err.message }, 'handshake failed');
    this.deps.transport.close();
    this.reject(err);
  }
}
