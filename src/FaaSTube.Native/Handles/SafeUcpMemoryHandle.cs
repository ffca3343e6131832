namespace FaaSTube.Native.Handles;

/// <summary>
/// Memory registered with a UCP context (ucp_mem_map; ucp_mem_unmap on release): staging that UCX
/// sends from or receives into without registering it per operation.
/// </summary>
internal sealed unsafe class SafeUcpMemoryHandle : SafeUcpChildHandle
{
    private SafeUcpMemoryHandle(SafeUcpContextHandle context)
        : base(context)
    {
    }

    /// <summary>The registered range's start.</summary>
    public nint Address { get; private set; }

    /// <summary>The registered range's length in bytes.</summary>
    public nuint Length { get; private set; }

    /// <summary>Registers host memory at <paramref name="address"/> (which the caller keeps alive, and pinned, until this is released).</summary>
    public static SafeUcpMemoryHandle Map(SafeUcpContextHandle context, void* address, nuint length)
    {
        var result = new SafeUcpMemoryHandle(context);
        try
        {
            var parameters = new UcpMemMapParams
            {
                FieldMask = Interop.Ucp.MEM_MAP_PARAM_FIELD_ADDRESS | Interop.Ucp.MEM_MAP_PARAM_FIELD_LENGTH
                    | Interop.Ucp.MEM_MAP_PARAM_FIELD_MEMORY_TYPE,
                Address = address,
                Length = length,
                MemoryType = Interop.Ucp.MEMORY_TYPE_HOST,
            };
            nint memh;
            UcxException.ThrowIfFailed(Interop.Ucp.ucp_mem_map(context.DangerousGetHandle(), &parameters, &memh));
            result.Attach(memh);
            result.Address = (nint)address;
            result.Length = length;
            return result;
        }
        finally
        {
            result.AbandonUnattached();
        }
    }

    protected override bool Free(nint value, nint parent) => Interop.Ucp.ucp_mem_unmap(parent, value) == UcsStatus.Ok;
}
