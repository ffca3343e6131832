namespace FaaSTube.Native.Ucx;

/// <summary>
/// One active message as UCX hands it to a handler (<see cref="IUcxMessageHandler"/>), on the
/// worker's progress thread; valid only during the call. Eager data is in UCX's receive buffer
/// (<see cref="EagerData"/>: copy what is kept); rendezvous data has not moved yet: it is fetched
/// only if the handler calls <see cref="UcxWorker.ReceiveData"/>, else UCX tells the sender it was
/// dropped. Nothing of the message outlives the call unless the handler copied or received it.
/// </summary>
internal readonly unsafe ref struct UcxActiveMessage
{
    private readonly ulong _attributes;

    internal UcxActiveMessage(uint id, ReadOnlySpan<byte> header, void* data, nuint length, ulong attributes, nint replyEndpoint)
    {
        Id = id;
        Header = header;
        Data = data;
        Length = (long)length;
        _attributes = attributes;
        ReplyEndpoint = replyEndpoint;
    }

    /// <summary>The active-message id the sender used.</summary>
    public uint Id { get; }

    /// <summary>The user header (the sender's, whole).</summary>
    public ReadOnlySpan<byte> Header { get; }

    /// <summary>The data's length in bytes (announced by the sender for a rendezvous message).</summary>
    public long Length { get; }

    /// <summary>Whether the data waits on the sender (rendezvous) rather than having arrived (eager).</summary>
    public bool IsRendezvous => (_attributes & Interop.Ucp.AM_RECV_ATTR_FLAG_RNDV) != 0;

    /// <summary>The endpoint the message came on (ucp_ep_h), when the sender asked for replies (UCP_AM_SEND_FLAG_REPLY); 0 otherwise.</summary>
    public nint ReplyEndpoint { get; }

    /// <summary>The data of an eager message (empty for a rendezvous one).</summary>
    public ReadOnlySpan<byte> EagerData => IsRendezvous || Length == 0 ? default : new ReadOnlySpan<byte>(Data, checked((int)Length));

    /// <summary>The data pointer or rendezvous descriptor, for ucp_am_recv_data_nbx.</summary>
    internal void* Data { get; }
}

/// <summary>
/// What a <see cref="UcxWorker"/> calls for each active message of an id it handles
/// (<see cref="UcxWorker.SetMessageHandlerAsync"/>): runs on the progress thread, must not block,
/// and decides there what happens to the message: copy eager data, receive rendezvous data into
/// memory it chooses, or nothing (the message is dropped, and UCX frees it at once).
/// </summary>
internal interface IUcxMessageHandler
{
    /// <summary>One message; exceptions are reported and the message is dropped.</summary>
    void OnMessage(UcxWorker worker, in UcxActiveMessage message);
}
