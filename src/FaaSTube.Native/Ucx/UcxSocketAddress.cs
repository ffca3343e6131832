using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace FaaSTube.Native.Ucx;

/// <summary>
/// IP endpoints to and from the native <c>struct sockaddr</c> bytes UCX takes and gives
/// (<see cref="SocketAddress.Buffer"/> holds exactly those on Linux).
/// </summary>
internal static class UcxSocketAddress
{
    /// <summary>The sockaddr of <paramref name="endpoint"/> (sockaddr_in or sockaddr_in6).</summary>
    public static byte[] ToNative(IPEndPoint endpoint)
    {
        var address = endpoint.Serialize();
        return address.Buffer.Span[..address.Size].ToArray();
    }

    /// <summary>The IP endpoint of a sockaddr (sockaddr_storage read by family: AF_INET or AF_INET6).</summary>
    public static IPEndPoint FromNative(ReadOnlySpan<byte> sockaddr)
    {
        // Linux: sa_family_t is the first two bytes, in host order.
        ushort family = MemoryMarshal.Read<ushort>(sockaddr);
        var (addressFamily, size) = family switch
        {
            2 => (AddressFamily.InterNetwork, 16),
            10 => (AddressFamily.InterNetworkV6, 28),
            _ => throw new NotSupportedException($"socket address family {family} is not an IP family"),
        };
        var address = new SocketAddress(addressFamily, size);
        sockaddr[..size].CopyTo(address.Buffer.Span);
        return (IPEndPoint)new IPEndPoint(IPAddress.Any, 0).Create(address);
    }
}
