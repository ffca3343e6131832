using System.Runtime.InteropServices;

namespace FaaSTube.Devices.Simulated;

/// <summary>Host memory for the simulated GPU's "pinned" buffers: native memory (never moved by the GC), or the caller's memory when registered.</summary>
internal sealed unsafe class NativeHostMemory : SafeHandle
{
    private readonly bool _owns;

    public NativeHostMemory(long bytes)
        : base(0, ownsHandle: true)
    {
        SetHandle((nint)NativeMemory.AlignedAlloc((nuint)bytes, 4096));
        NativeMemory.Clear((void*)handle, (nuint)bytes);
        _owns = true;
    }

    public NativeHostMemory(nint registered)
        : base(0, ownsHandle: true)
    {
        SetHandle(registered);
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        if (_owns)
        {
            NativeMemory.AlignedFree((void*)handle);
        }

        return true;
    }
}
