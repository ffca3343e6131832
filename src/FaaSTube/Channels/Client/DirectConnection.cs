using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;

namespace FaaSTube.Channels.Client;

/// <summary>
/// A client in the node's own process: every call is a direct call into its <see cref="NodeSession"/>
/// (no frames, no pipes, no copies of the request). The session's rules hold as for a socket
/// client: a request slot per call, the same checks, the same errors.
/// </summary>
internal sealed class DirectConnection(NodeSession session, Action<TubeException, IRequest?> oneWayFailed) : INodeConnection
{
    private readonly Lock _order = new();
    private Task _posts = Task.CompletedTask; // one-way requests not yet applied (every slot was taken), in order

    public async Task<TReply> CallAsync<TReply>(IRequest<TReply> request, CancellationToken cancellationToken)
        where TReply : IPayload<TReply>
    {
        await PostsApplied().ConfigureAwait(false); // a later request sees every earlier one-way request applied, as on a connection
        var run = RunAsync(request);
        if (!run.IsCompleted)
        {
            // It goes on elsewhere (a Get that waited resumes on the publisher's thread, perhaps a
            // session's ring thread): the caller's code continues on the thread pool, never there.
            await ((Task)run).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await Task.Yield();
        }

        return (TReply)await run.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public ValueTask PostAsync(IRequest<Empty> request)
    {
        Task<IMessage> run;
        lock (_order)
        {
            // Applied before this returns, unless every slot is taken: then after the posts before it.
            run = _posts.IsCompleted ? RunAsync(request) : _posts.ContinueWith(_ => RunAsync(request), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).Unwrap();
            if (!run.IsCompleted)
            {
                _posts = run;
            }
        }

        if (run.IsCompleted)
        {
            Report(run, request);
        }
        else
        {
            _ = run.ContinueWith(t => Report(t, request), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        return default;
    }

    private Task PostsApplied()
    {
        lock (_order)
        {
            return _posts.IsCompleted ? Task.CompletedTask : _posts.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    public async Task<byte[]> CallRawAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var reply = await EnterAsync(() => session.ExecuteAsync(type, payload.Span)).WaitAsync(cancellationToken).ConfigureAwait(false);
        var writer = new PayloadWriter();
        reply.Write(writer);
        return writer.Memory.ToArray();
    }

    /// <summary>Ends the session: it cancels what runs, waits for it, and gives back what the client held.</summary>
    public async ValueTask DisposeAsync()
    {
        session.Abort();
        await session.Completion.ConfigureAwait(false);
    }

    private Task<IMessage> RunAsync(IRequest request) => EnterAsync(() => session.ExecuteAsync(request));

    private async Task<IMessage> EnterAsync(Func<Task<(IMessage Reply, string Path)>> execute)
    {
        try
        {
            await session.EnterAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException e)
        {
            throw Gone(e);
        }

        try
        {
            return (await execute().ConfigureAwait(false)).Reply;
        }
        catch (OperationCanceledException e) when (session.Ended.IsCancellationRequested)
        {
            throw Gone(e);
        }
        finally
        {
            session.Exit();
        }
    }

    private void Report(Task<IMessage> run, IRequest request)
    {
        if (run.Exception?.InnerException is TubeException refused)
        {
            oneWayFailed(refused, request);
        }
        else
        {
            _ = run.Exception; // the node is gone: the next call says so
        }
    }

    private static TubeNodeUnavailableException Gone(Exception cause) =>
        new("The FaaSTube node in this process stopped, or this client was closed.", cause);
}
