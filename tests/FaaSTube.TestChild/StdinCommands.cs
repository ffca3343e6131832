using System.Threading.Channels;

/// <summary>
/// The commands a test sends a child on stdin, one per line, read on a thread of their own. When stdin
/// closes (the test, or the process that ran it, is gone) the child exits at once, whatever is pending.
/// </summary>
internal static class StdinCommands
{
    public static ChannelReader<string> Start()
    {
        var commands = Channel.CreateUnbounded<string>();
        var reader = new Thread(() =>
        {
            while (Console.In.ReadLine() is { } line)
            {
                commands.Writer.TryWrite(line);
            }

            Environment.Exit(0); // the test is gone: nothing may outlive it
        }) { IsBackground = true, Name = "stdin" };
        reader.Start();
        return commands.Reader;
    }
}
