namespace FaaSTube.Devices.Completion;

/// <summary>One issued GPU operation that a <see cref="CompletionThread{T}"/> waits for and then completes.</summary>
internal interface IDeviceCompletion
{
    /// <summary>Blocks until the device has finished the operation, sleeping rather than spinning; throws when it failed.</summary>
    void WaitForDevice();

    /// <summary>Completes the awaiting caller: with the result when <paramref name="error"/> is null, else with the error. Must not throw.</summary>
    void Finish(Exception? error);
}
