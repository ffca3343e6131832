using FaaSTube.Channels.Protocol;

namespace FaaSTube.Channels.Transport;

/// <summary>One control message: the (type, request id, payload) triple a socket frame carries (Protocol/Frames.cs), here out of a <see cref="ControlRing"/>.</summary>
internal readonly record struct ControlFrame(FrameType Type, uint RequestId, byte[] Payload);
