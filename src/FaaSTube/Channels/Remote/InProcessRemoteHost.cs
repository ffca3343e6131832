using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote;

/// <summary>The node serves its remote clients itself (<see cref="NetworkIsolation.InProcess"/>): each is a <see cref="NodeSession"/> of this process.</summary>
internal sealed class InProcessRemoteHost(TubeNode node) : IRemoteHost
{
    public TubeNodeOptions Settings => node.Settings;

    public ILogger Logger => node.Logger;

    public string InternalError(string operation, long session, Exception exception) => node.InternalError(operation, session, exception);

    public IRemoteBackend NewSession() => new Backend(node.NewSession(0, RemoteSession.RemoteUid, inProcess: false));

    /// <summary>A node session driven by a remote transport: its window is memory the node allocates (<see cref="NodeSession.OpenRemote"/>).</summary>
    private sealed class Backend(NodeSession session) : IRemoteBackend
    {
        public long Id => session.Id;

        public CancellationToken Ended => session.Ended;

        public Task Completion
        {
            get => session.Completion;
            set => session.Completion = value;
        }

        public Memory<byte> Window => session.CurrentWindow is { } window ? window.Memory : Memory<byte>.Empty;

        public Task<HelloOk> OpenAsync(Hello hello) => Task.FromResult(session.OpenRemote(hello));

        public async Task<ReadOnlyMemory<byte>> ExecuteAsync(FrameType type, byte[] payload)
        {
            var (reply, _) = await session.ExecuteFrameAsync(type, payload).ConfigureAwait(false);
            var writer = new PayloadWriter();
            reply.Write(writer);
            return writer.Memory;
        }

        public Task EnterAsync() => session.EnterAsync();

        public void Exit() => session.Exit();

        public void Abort() => session.Abort();

        public Task EndAsync(Func<Task> closeTransport) => session.EndAsync(closeTransport);
    }
}
