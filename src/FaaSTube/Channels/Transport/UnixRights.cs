using System.Buffers.Binary;
using FaaSTube.Channels.Protocol;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using FaaSTube.Native;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// A frame with one file descriptor attached (<c>SCM_RIGHTS</c> over the Unix socket): how a client
/// gives the node its window. The kernel passes the descriptor itself, so the node never opens
/// anything by a name a client chose. Used for the handshake only; every later frame goes through
/// the connection's pipes.
/// </summary>
internal static class UnixRights
{
    private const int MaxDescriptors = 4;
    private const int ControlHeaderBytes = 16; // sizeof(cmsghdr) on LP64 // room to see (and close) a client that sends more than one

    /// <summary>SO_PEERCRED: (pid, uid) of the process at the other end, as the kernel recorded them at connect time.</summary>
    public static (int Pid, uint Uid) PeerCredentials(Socket socket)
    {
        Span<byte> creds = stackalloc byte[12];
        if (OperatingSystem.IsLinux() && socket.GetRawSocketOption(Interop.Libc.SOL_SOCKET, SoPeerCred, creds) == 12)
        {
            return (BitConverter.ToInt32(creds), BitConverter.ToUInt32(creds[4..]));
        }

        return (0, uint.MaxValue);
    }

    private const int SoPeerCred = 17;

    /// <summary>Sends <paramref name="frame"/> (a whole frame, header included) with <paramref name="descriptor"/> attached to its first byte.</summary>
    public static void Send(Socket socket, ReadOnlySpan<byte> frame, SafeHandle descriptor) => Send(socket, frame, [descriptor]);

    /// <summary>Sends <paramref name="frame"/> with <paramref name="descriptors"/> (one to four), in order, attached to its first byte.</summary>
    public static unsafe void Send(Socket socket, ReadOnlySpan<byte> frame, IReadOnlyList<SafeHandle> descriptors)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(descriptors.Count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(descriptors.Count, 4);
        int added = 0;
        try
        {
            int space = Interop.Libc.ControlSpace(sizeof(int) * descriptors.Count);
            byte* control = stackalloc byte[space];
            new Span<byte>(control, space).Clear();
            var header = (Interop.Libc.ControlHeader*)control;
            header->Length = (nuint)Interop.Libc.ControlLength(sizeof(int) * descriptors.Count);
            header->Level = Interop.Libc.SOL_SOCKET;
            header->Type = Interop.Libc.SCM_RIGHTS;
            for (; added < descriptors.Count; added++)
            {
                bool ok = false;
                descriptors[added].DangerousAddRef(ref ok);
                ((int*)(control + ControlHeaderBytes))[added] = (int)descriptors[added].DangerousGetHandle();
            }

            int sent = 0;
            fixed (byte* bytes = frame)
            {
                while (sent < frame.Length)
                {
                    var vector = new Interop.Libc.IoVector { Base = bytes + sent, Length = (nuint)(frame.Length - sent) };
                    var message = new Interop.Libc.MessageHeader
                    {
                        Vectors = &vector,
                        VectorCount = 1,
                        Control = sent == 0 ? control : null, // the descriptor rides on the first byte only
                        ControlLength = sent == 0 ? (nuint)space : 0,
                    };
                    nint n = Interop.Libc.sendmsg(socket.Handle, &message, Interop.Libc.MSG_NOSIGNAL | Interop.Libc.MSG_DONTWAIT);
                    if (n >= 0)
                    {
                        sent += (int)n;
                    }
                    else if (Marshal.GetLastPInvokeError() is Interop.Libc.EAGAIN or Interop.Libc.EINTR)
                    {
                        socket.Poll(TimeSpan.FromSeconds(1), SelectMode.SelectWrite);
                    }
                    else
                    {
                        throw new IOException($"sendmsg failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.");
                    }
                }
            }
        }
        finally
        {
            for (int i = 0; i < added; i++)
            {
                descriptors[i].DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Receives exactly one frame (nothing beyond it is read) and the descriptors that came with it:
    /// null at a clean end of stream. A frame length outside [5, <paramref name="maxFrameBytes"/>]
    /// throws <see cref="InvalidDataException"/>; descriptors that came with it are closed then.
    /// </summary>
    public static async Task<(byte[] Frame, List<SafeFileHandle> Descriptors)?> ReceiveAsync(Socket socket, int maxFrameBytes, CancellationToken cancellationToken)
    {
        var descriptors = new List<SafeFileHandle>();
        try
        {
            var length = new byte[4];
            if (!await ReceiveExactlyAsync(socket, length, descriptors, cancellationToken).ConfigureAwait(false))
            {
                descriptors.ForEach(d => d.Dispose());
                return null;
            }

            uint n = Frames.CheckLength(BinaryPrimitives.ReadUInt32LittleEndian(length), maxFrameBytes);

            var frame = new byte[n];
            if (!await ReceiveExactlyAsync(socket, frame, descriptors, cancellationToken).ConfigureAwait(false))
            {
                throw new InvalidDataException("The connection ended inside a frame.");
            }

            return (frame, descriptors);
        }
        catch
        {
            descriptors.ForEach(d => d.Dispose());
            throw;
        }
    }

    /// <summary>Fills <paramref name="buffer"/>; false at end of stream before the first byte.</summary>
    private static async Task<bool> ReceiveExactlyAsync(Socket socket, byte[] buffer, List<SafeFileHandle> descriptors, CancellationToken cancellationToken)
    {
        int received = 0;
        var peek = new byte[1];
        while (received < buffer.Length)
        {
            // Wait without consuming (a peek carries no descriptors), then take what is there with recvmsg.
            if (await socket.ReceiveAsync(peek, SocketFlags.Peek, cancellationToken).ConfigureAwait(false) == 0)
            {
                return received == 0 ? false : throw new InvalidDataException("The connection ended inside a frame.");
            }

            int n = ReceiveSome(socket, buffer.AsSpan(received), descriptors);
            received += Math.Max(n, 0);
        }

        return true;
    }

    /// <summary>The most descriptors one frame keeps (Hello's window and control ring); any more are closed as they arrive.</summary>
    private const int MaxKept = 2;

    /// <summary>Adds, once, an invalid handle: the receiver refuses a frame that came with more descriptors than it keeps.</summary>
    private static void MarkOverflow(List<SafeFileHandle> descriptors)
    {
        if (!descriptors.Any(d => d.IsInvalid))
        {
            descriptors.Add(new SafeFileHandle(-1, ownsHandle: false));
        }
    }

    /// <summary>One non-blocking recvmsg into <paramref name="into"/>; every descriptor that arrives is kept (to be checked or closed).</summary>
    private static unsafe int ReceiveSome(Socket socket, Span<byte> into, List<SafeFileHandle> descriptors)
    {
        int space = Interop.Libc.ControlSpace(MaxDescriptors * sizeof(int));
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        fixed (byte* bytes = into)
        {
            var vector = new Interop.Libc.IoVector { Base = bytes, Length = (nuint)into.Length };
            var message = new Interop.Libc.MessageHeader { Vectors = &vector, VectorCount = 1, Control = control, ControlLength = (nuint)space };
            nint n = Interop.Libc.recvmsg(socket.Handle, &message, Interop.Libc.MSG_DONTWAIT | Interop.Libc.MSG_CMSG_CLOEXEC);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return errno is Interop.Libc.EAGAIN or Interop.Libc.EINTR
                    ? 0
                    : throw new IOException($"recvmsg failed: {Marshal.GetPInvokeErrorMessage(errno)}.");
            }

            // Walk the control messages the kernel filled in (it closes what did not fit: MSG_CTRUNC).
            int offset = 0;
            while (offset + ControlHeaderBytes <= (int)message.ControlLength)
            {
                var header = (Interop.Libc.ControlHeader*)(control + offset);
                int length = (int)header->Length;
                if (length < ControlHeaderBytes || offset + length > (int)message.ControlLength)
                {
                    break;
                }

                if (header->Level == Interop.Libc.SOL_SOCKET && header->Type == Interop.Libc.SCM_RIGHTS)
                {
                    int count = (length - ControlHeaderBytes) / sizeof(int);
                    var fds = (int*)(control + offset + ControlHeaderBytes);
                    for (int i = 0; i < count; i++)
                    {
                        var descriptor = new SafeFileHandle(fds[i], ownsHandle: true);
                        if (descriptors.Count(d => !d.IsInvalid) < MaxKept)
                        {
                            descriptors.Add(descriptor);
                        }
                        else
                        {
                            descriptor.Dispose(); // a frame never needs more: one sent in pieces, each with descriptors, keeps none of the rest
                            MarkOverflow(descriptors);
                        }
                    }
                }

                offset += Interop.Libc.ControlSpace(length - ControlHeaderBytes);
            }

            if ((message.Flags & Interop.Libc.MSG_CTRUNC) != 0)
            {
                MarkOverflow(descriptors); // more came than fit
            }

            return (int)n;
        }
    }
}
