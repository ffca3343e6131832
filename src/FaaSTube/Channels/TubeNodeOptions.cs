using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Transfers;

namespace FaaSTube.Channels;

/// <summary>
/// How a <see cref="TubeNode"/> runs. Bound from the <c>FaaSTube:Node</c> configuration section by
/// <c>AddFaaSTubeNode</c> (the nested <see cref="Gpus"/>, <see cref="Pool"/> and <see cref="Transfers"/>
/// as <c>FaaSTube:Node:Pool:SlabBytes</c> and so on). The node takes a copy when it starts and runs
/// with that copy to the end: changing this object afterwards has no effect on it.
/// </summary>
public sealed class TubeNodeOptions
{
    /// <summary>The Unix socket clients connect to (default <see cref="DefaultSocketPath"/>); null: in-process clients only.</summary>
    public string? SocketPath { get; set; } = DefaultSocketPath;

    /// <summary><c>$XDG_RUNTIME_DIR/faastube.sock</c>, or <c>/tmp/faastube-{user}.sock</c>.</summary>
    public static string DefaultSocketPath =>
        Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } run
            ? Path.Combine(run, "faastube.sock")
            : Path.Combine(Path.GetTempPath(), $"faastube-{Environment.UserName}.sock");

    /// <summary>The GPUs (backend, simulated topology).</summary>
    public GpuSystemOptions Gpus { get; set; } = new();

    /// <summary>The pool of each GPU.</summary>
    public GpuPoolOptions Pool { get; set; } = new();

    /// <summary>The transfer engine of each GPU.</summary>
    public TransferEngineOptions Transfers { get; set; } = new();

    /// <summary>User ids allowed to connect (checked with SO_PEERCRED); null: only the node's own user.</summary>
    public IReadOnlyCollection<uint>? AllowedUids { get; set; }

    /// <summary>
    /// User ids besides the node's own that may ask for its status (the admin request, <c>faastube status</c>),
    /// which shows every workflow's sessions and data ids; null: only the node's own user. They also need
    /// access to the socket (<see cref="SocketAccess"/>); they need not be in <see cref="AllowedUids"/>.
    /// </summary>
    public IReadOnlyCollection<uint>? AdminUids { get; set; }

    /// <summary>
    /// Whether a connecting client may name a workflow (ids, data and pool memory are scoped by it).
    /// Null (the default): clients running as the node's own user may name any workflow, clients of any
    /// other user none. Run tenants as users of their own and say here which workflows each may use.
    /// </summary>
    public Func<TubeClientCredentials, string, bool>? AuthorizeWorkflow { get; set; }

    /// <summary>
    /// Whether a workflow may use a namespace of named objects (its first argument the workflow, its
    /// second the namespace), asked on every named call. Null (the default): none; a workflow's own
    /// scope (an empty namespace) needs no grant. A namespace a workflow is not granted answers
    /// <c>NotFound</c>, as a name that does not exist.
    /// </summary>
    public Func<string, string, bool>? AuthorizeNamespace { get; set; }

    /// <summary>The most names one scope (a workflow's own, or a namespace) holds, loads in progress included (default 1024).</summary>
    public int MaxNamesPerScope { get; set; } = 1024;

    /// <summary>
    /// How fast the model cache forgets: each request for a cacheable named object counts half as much
    /// every half-life (default 10 minutes, 1 s to 7 days), so an object hot an hour ago but cold now
    /// is evicted before one hot now. Null: requests never lose weight.
    /// </summary>
    public TimeSpan? CacheHalfLife { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The longest a named object's load may take (<c>GetOrLoadAsync</c>; default 5 minutes, at most a
    /// day): then the load fails (its waiters get <see cref="TubeError.LoadFailed"/>, the next caller
    /// loads), and the late loader's commit is refused. A live loader that hangs cannot keep a name stuck.
    /// </summary>
    public TimeSpan LoadTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The socket file's permissions (default owner read/write only); other users listed in <see cref="AllowedUids"/> need group or other access to connect.</summary>
    public UnixFileMode SocketAccess { get; set; } = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>The largest window a client may register (default 256 MiB): windows are pinned host memory charged to the node.</summary>
    public long MaxWindowBytes { get; set; } = 256L << 20;

    /// <summary>
    /// The largest arena range a client may lease (default 1 GiB; 0: arenas refused, clients allocate
    /// with a round trip each). A range is pool memory charged to the client's workflow from its lease
    /// to its return, whether pieces use it or not.
    /// </summary>
    public long MaxArenaBytes { get; set; } = 1L << 30;

    /// <summary>Arena ranges one connection may hold at once, over all GPUs (default 4: the one in use and the one leased ahead, on two GPUs).</summary>
    public int MaxArenaRangesPerSession { get; set; } = 4;

    /// <summary>Leases and unfinished Puts one connection may hold at once (default 16,384).</summary>
    public int MaxHeldPerSession { get; set; } = 16384;

    /// <summary>The largest control frame accepted (default 64 KiB, at most 16 MiB; bulk data never goes over the socket).</summary>
    public int MaxFrameBytes { get; set; } = 64 << 10;

    /// <summary>How long unconsumed data is kept when Put gives no TTL (default 10 minutes).</summary>
    public TimeSpan DefaultTtl { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How often expired data is swept (default 1 s); null: only by <see cref="TubeNode.SweepExpired"/>.</summary>
    public TimeSpan? SweepInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest TTL a client may ask for (default 7 days); longer-lived data is put with PutOptions.KeepUntilDeleted.</summary>
    public TimeSpan MaxTtl { get; set; } = TimeSpan.FromDays(7);

    /// <summary>The longest a Get waits for data that is allocated but not yet published (default 60 s; a client may ask for less).</summary>
    public TimeSpan MaxPublishWait { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Requests one connection may have running at once (default 64); one more frame read waits for a slot, and as many Gets again may wait for publishes.</summary>
    public int MaxRequestsInFlight { get; set; } = 64;

    /// <summary>Connections one user id may hold at once (default 1024); more are refused with <see cref="TubeError.AccessDenied"/>.</summary>
    public int MaxSessionsPerUser { get; set; } = 1024;

    /// <summary>How long a client has to close a retiring slab it was told to close (default 30 s); then its session is ended.</summary>
    public TimeSpan SlabCloseTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a new connection has to send Hello with its window (default 5 s); then it is closed.</summary>
    public TimeSpan HelloTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Sessions that may use a control ring at once, across all users (default 256): each costs the
    /// node a thread of its own. A client beyond it is served over the socket (its Hello's answer says so).
    /// </summary>
    public int MaxRingSessions { get; set; } = 256;

    /// <summary>
    /// Whether a request's span continues the client's trace (default <see langword="false"/>). Off, the
    /// node's span of a client's request starts a trace of its own and links to the client's span, so
    /// the node's sampler decides what is recorded: a client that marks every request sampled cannot
    /// make the node record every span. Turn it on only where every client is trusted (one tenant),
    /// so traces read end to end. In-process clients always continue their caller's trace.
    /// </summary>
    public bool ContinueClientTraces { get; set; }

    /// <summary>How long the node waits for a client to take its answers off its control ring when the ring is full (default 5 s); then the session is ended.</summary>
    public TimeSpan StalledClientTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The longest a graceful stop (<see cref="TubeNode.StopAsync"/>) waits for the requests in flight
    /// (default 30 s, a host's default shutdown timeout); then clients are disconnected. A client that
    /// stops reading its answers cannot hold the node's stop longer than this, whatever token the caller passes.
    /// </summary>
    public TimeSpan StopTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Where the node listens for remote clients over UCX, as <c>host:port</c> (for example
    /// <c>"10.0.0.5:7300"</c>; port 0 picks a free one, see <see cref="TubeNode.NetworkEndPoint"/>).
    /// Null (the default): no network listener. Remote clients reach host data only (Put, Get to host
    /// memory, Where, Release, Delete) and prove their workflow with <see cref="RemoteSecrets"/>. UCX
    /// over TCP is not encrypted: listen on a private network only (docs/protocol.md, Remote clients).
    /// </summary>
    public string? NetworkListen { get; set; }

    /// <summary>
    /// Where the network listener runs (default <see cref="Channels.NetworkIsolation.Process"/>): in the
    /// network gateway, a child process the node starts, restarts if it dies and stops with itself,
    /// which relays each authenticated remote client to the node over <see cref="SocketPath"/>; or in
    /// the node's own process. UCX's TCP transport can abort the process it runs in when a peer
    /// vanishes at the wrong moment (docs/testing.md), so only the gateway mode keeps a hostile remote
    /// client from taking the node down. The gateway mode needs <see cref="SocketPath"/>.
    /// </summary>
    public NetworkIsolation NetworkIsolation { get; set; } = NetworkIsolation.Process;

    /// <summary>
    /// The most memory the network gateway (<see cref="Channels.NetworkIsolation.Process"/>) may hold
    /// of its own, in bytes (default 2 GiB, at least 256 MiB). UCX reassembles a remote peer's eager
    /// message in memory it allocates before the node's checks see it, so a peer can make the process
    /// that runs UCX allocate as much as it sends; the gateway bounds itself at start, before UCX is
    /// loaded: its data (RLIMIT_DATA: private writable memory, what such a message takes) to this, its
    /// managed heap to half of it (the GC's hard limit). At the bound the allocation fails: UCX drops the
    /// message, or the gateway dies and is started again; the node's own memory is never at stake. The
    /// remote clients' windows are shared memory and count apart (<see cref="MaxWindowBytes"/>). A
    /// gateway that cannot bound itself does not start. Not used with <see cref="Channels.NetworkIsolation.InProcess"/>.
    /// </summary>
    public long GatewayMemoryLimit { get; set; } = 2L << 30;

    /// <summary>The least <see cref="GatewayMemoryLimit"/> may be: what the gateway's runtime, UCX and a few sessions need to start.</summary>
    internal const long MinGatewayMemoryLimit = 256L << 20;

    /// <summary>
    /// The secret of each workflow remote clients may name (at least 16 bytes each): a client proves
    /// it knows its workflow's secret by an HMAC-SHA256 of a challenge (the secret never crosses the
    /// network). A workflow not listed here cannot be used remotely. Null: no remote client is accepted.
    /// </summary>
    public IReadOnlyDictionary<string, byte[]>? RemoteSecrets { get; set; }

    /// <summary>
    /// Remote clients that may be connected at once, authenticated (default 64; at most
    /// <see cref="MaxSessionsPerUser"/> counts too). Each has a UCX worker and a progress thread of
    /// its own (its unexpected messages die with it): a connection over the limit is rejected by
    /// the listener before any endpoint exists.
    /// </summary>
    public int MaxRemoteSessions { get; set; } = 64;

    /// <summary>
    /// How long an authenticated remote client may stay silent (default 30 s): once it has sent
    /// nothing for a third of this, the node pings it (a <c>Ping</c> active message, which the client
    /// answers with <c>Pong</c>); once nothing at all has come for this long, its endpoint is closed by
    /// force and its session ends. UCX over TCP alone does not notice a link cut while the node only
    /// waits (docs/testing.md), so this bounds how long a cut-off client holds what it holds.
    /// </summary>
    public TimeSpan RemoteIdleTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Remote connections that may be in their handshake at once (default 16): accepted, not yet
    /// authenticated, each with its own worker until its proof or <see cref="HelloTimeout"/>
    /// (counted from the accept, over every send and receive of the handshake). More are rejected by
    /// the listener; they never count against <see cref="MaxRemoteSessions"/>.
    /// </summary>
    public int MaxRemoteHandshakes { get; set; } = 16;

    /// <summary>
    /// Remote connections one workflow may have at once, in their handshake or authenticated
    /// (default 16): the workflow is known from its connect ticket before anything is accepted, so a
    /// tenant that mints tickets with its own secret cannot take every remote place; its handshakes
    /// are also held to a quarter of <see cref="MaxRemoteHandshakes"/> (at least one).
    /// </summary>
    public int MaxRemoteSessionsPerWorkflow { get; set; } = 16;

    /// <summary>
    /// This node's number among its peers, 1 to 65535 (0, the default: none). Every id the node makes
    /// carries it (<see cref="TubeId.Home"/>), so another node asked for that id knows where to fetch it.
    /// Needed with <see cref="PeerNodes"/>; each node of a group has its own.
    /// </summary>
    public int NodeNumber { get; set; }

    /// <summary>
    /// The other nodes this one fetches from, by their <see cref="NodeNumber"/>: <c>ucx://host:port</c>,
    /// where each listens (<see cref="NetworkListen"/>). Null (the default): none. A Get of an id or a
    /// name this node does not hold is then served by copying it once from the peer that holds it into
    /// this node's pool (docs/architecture.md, Node to node), for a workflow with a
    /// <see cref="RemoteSecrets"/> entry only: the fetch proves itself to the peer with that workflow's
    /// secret, which the peer must know too. The fetches run where the network listener runs
    /// (<see cref="NetworkIsolation"/>), so a node with peers listens too.
    /// </summary>
    public IReadOnlyDictionary<int, string>? PeerNodes { get; set; }

    /// <summary>Fetches from peers that may run at once (default 8); more wait for a place, within their timeout.</summary>
    public int MaxPeerFetches { get; set; } = 8;

    /// <summary>How long one fetch from the peers may take, waiting for a place included (default 2 minutes); then its Gets fail with <see cref="TubeError.NotFound"/> saying so.</summary>
    public TimeSpan PeerFetchTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>UCX settings for the network listener (names without the <c>UCX_</c> prefix, e.g. <c>TLS=tcp</c>); null: UCX's defaults and environment.</summary>
    internal IReadOnlyDictionary<string, string>? UcxSettings { get; set; }

    /// <summary>
    /// A deep copy, taken when the node starts (nested options included; <see cref="AllowedUids"/> copied
    /// to an array): the node reads only its copy, so later changes to this object have no effect.
    /// </summary>
    internal TubeNodeOptions Snapshot()
    {
        var copy = (TubeNodeOptions)MemberwiseClone();
        copy.Gpus = (Gpus ?? throw new ArgumentNullException(nameof(Gpus))).Clone();
        copy.Pool = (Pool ?? throw new ArgumentNullException(nameof(Pool))).Clone();
        copy.Transfers = (Transfers ?? throw new ArgumentNullException(nameof(Transfers))).Clone();
        copy.AllowedUids = AllowedUids?.ToArray();
        copy.AdminUids = AdminUids?.ToArray();
        copy.RemoteSecrets = RemoteSecrets?.ToDictionary(s => s.Key, s => s.Value?.ToArray()!, StringComparer.Ordinal);
        copy.PeerNodes = PeerNodes?.ToDictionary(p => p.Key, p => p.Value);
        return copy;
    }

    /// <summary>
    /// Throws <see cref="ArgumentException"/> naming the first option out of range, nested ones by
    /// their path (<c>Pool:SlabBytes</c>): what the node checks at start, and what
    /// <c>AddFaaSTubeNode</c>'s validation reports with the section's name in front.
    /// </summary>
    internal void ValidateAll()
    {
        Validate();
        ArgumentNullException.ThrowIfNull(Gpus);
        Nested(nameof(Pool), () => (Pool ?? throw new ArgumentNullException(nameof(Pool))).Validate());
        Nested(nameof(Transfers), () => (Transfers ?? throw new ArgumentNullException(nameof(Transfers))).Validate());
    }

    private static void Nested(string name, Action validate)
    {
        try
        {
            validate();
        }
        catch (ArgumentException e) when (e.ParamName is { } inner && !inner.Contains(':', StringComparison.Ordinal))
        {
            throw new ArgumentOutOfRangeException($"{name}:{inner}", e.Message.Replace($" (Parameter '{inner}')", "", StringComparison.Ordinal));
        }
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxFrameBytes, 1 << 10, nameof(MaxFrameBytes));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxFrameBytes, 16 << 20, nameof(MaxFrameBytes));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(DefaultTtl, TimeSpan.Zero, nameof(DefaultTtl));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxTtl, DefaultTtl, nameof(MaxTtl));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxTtl, TimeSpan.FromDays(3650), nameof(MaxTtl));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxRequestsInFlight, nameof(MaxRequestsInFlight));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxPublishWait, TimeSpan.Zero, nameof(MaxPublishWait));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxSessionsPerUser, nameof(MaxSessionsPerUser));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HelloTimeout, TimeSpan.Zero, nameof(HelloTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(SlabCloseTimeout, TimeSpan.Zero, nameof(SlabCloseTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(StalledClientTimeout, TimeSpan.Zero, nameof(StalledClientTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(StopTimeout, TimeSpan.Zero, nameof(StopTimeout));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxRingSessions, nameof(MaxRingSessions));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxWindowBytes, 8L << 10, nameof(MaxWindowBytes));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxWindowBytes, int.MaxValue, nameof(MaxWindowBytes));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxHeldPerSession, nameof(MaxHeldPerSession));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxArenaBytes, nameof(MaxArenaBytes));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxArenaRangesPerSession, nameof(MaxArenaRangesPerSession));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxArenaRangesPerSession, 1024, nameof(MaxArenaRangesPerSession));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxNamesPerScope, nameof(MaxNamesPerScope));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxNamesPerScope, 1 << 20, nameof(MaxNamesPerScope));
        if (CacheHalfLife is { } halfLife)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(halfLife, TimeSpan.FromSeconds(1), nameof(CacheHalfLife));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(halfLife, TimeSpan.FromDays(7), nameof(CacheHalfLife));
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(LoadTimeout, TimeSpan.Zero, nameof(LoadTimeout));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(LoadTimeout, TimeSpan.FromDays(1), nameof(LoadTimeout));

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxRemoteSessions, nameof(MaxRemoteSessions));
        ArgumentOutOfRangeException.ThrowIfLessThan(RemoteIdleTimeout, TimeSpan.FromMilliseconds(300), nameof(RemoteIdleTimeout));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(RemoteIdleTimeout, TimeSpan.FromDays(1), nameof(RemoteIdleTimeout));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxRemoteHandshakes, nameof(MaxRemoteHandshakes));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxRemoteSessionsPerWorkflow, nameof(MaxRemoteSessionsPerWorkflow));
        ArgumentOutOfRangeException.ThrowIfLessThan(GatewayMemoryLimit, MinGatewayMemoryLimit, nameof(GatewayMemoryLimit));
        if (!Enum.IsDefined(NetworkIsolation))
        {
            throw new ArgumentOutOfRangeException(nameof(NetworkIsolation), NetworkIsolation, "Process or InProcess.");
        }

        if (NetworkListen is not null && NetworkIsolation == NetworkIsolation.Process && SocketPath is null)
        {
            throw new ArgumentException("A network listener in its own process (NetworkIsolation.Process) relays remote clients over the node's Unix socket: set SocketPath, or choose NetworkIsolation.InProcess.", nameof(SocketPath));
        }

        if (RemoteSecrets?.FirstOrDefault(s => s.Value is null || s.Value.Length < 16) is { Key: { } weak })
        {
            throw new ArgumentOutOfRangeException(nameof(RemoteSecrets), $"The secret of workflow '{weak}' has fewer than 16 bytes.");
        }

        ValidatePeers();
    }

    private void ValidatePeers()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(NodeNumber, nameof(NodeNumber));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(NodeNumber, ushort.MaxValue, nameof(NodeNumber));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxPeerFetches, nameof(MaxPeerFetches));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(PeerFetchTimeout, TimeSpan.Zero, nameof(PeerFetchTimeout));
        if (PeerNodes is not { Count: > 0 } peers)
        {
            return;
        }

        if (NodeNumber == 0)
        {
            throw new ArgumentException("A node with peers has a NodeNumber of its own (1-65535): the ids it makes carry it.", nameof(NodeNumber));
        }

        if (NetworkListen is null)
        {
            throw new ArgumentException("A node with peers listens too (NetworkListen): its fetches run where its network listener runs, and its peers fetch from it.", nameof(NetworkListen));
        }

        foreach (var (number, address) in peers)
        {
            if (number < 1 || number > ushort.MaxValue || number == NodeNumber)
            {
                throw new ArgumentOutOfRangeException(nameof(PeerNodes), number, $"Peer {number}: a peer's number is 1-65535 and not this node's own ({NodeNumber}).");
            }

            if (address is null || !address.StartsWith("ucx://", StringComparison.Ordinal) || address.Length <= "ucx://".Length)
            {
                throw new ArgumentException($"Peer {number}: '{address}' is not a ucx://host:port address.", nameof(PeerNodes));
            }
        }
    }
}

/// <summary>Who is connecting, as the kernel says (SO_PEERCRED): what <see cref="TubeNodeOptions.AuthorizeWorkflow"/> decides on.</summary>
/// <param name="Pid">The client's process id.</param>
/// <param name="Uid">The client's user id.</param>
public readonly record struct TubeClientCredentials(int Pid, uint Uid);
