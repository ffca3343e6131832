using System.Text;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// Lines of the gateway's output, each at most <c>maxChars</c> long: the rest of a longer line is
/// read and thrown away (the line comes back cut, ending in <see cref="CutMark"/>). The node reads what
/// the process that runs UCX writes, and that process may be taken over: no line it writes can make
/// the node hold more than this.
/// </summary>
internal sealed class BoundedLineReader(TextReader reader, int maxChars)
{
    /// <summary>Ends a line that was cut.</summary>
    public const string CutMark = " [cut]";

    private readonly char[] _buffer = new char[4096];
    private int _start;
    private int _end;

    /// <summary>The next line (without its end), or null once the output has ended.</summary>
    public async Task<string?> ReadLineAsync(CancellationToken cancellationToken = default)
    {
        var line = new StringBuilder();
        bool cut = false;
        while (true)
        {
            if (_start == _end)
            {
                _start = 0;
                _end = await reader.ReadAsync(_buffer.AsMemory(), cancellationToken).ConfigureAwait(false);
                if (_end == 0)
                {
                    return line.Length > 0 || cut ? Finish(line, cut) : null;
                }
            }

            int newline = Array.IndexOf(_buffer, '\n', _start, _end - _start);
            int stop = newline < 0 ? _end : newline;
            int room = maxChars - line.Length;
            int take = Math.Min(stop - _start, room);
            line.Append(_buffer, _start, take);
            cut |= take < stop - _start;
            _start = newline < 0 ? _end : newline + 1;
            if (newline >= 0)
            {
                return Finish(line, cut);
            }
        }
    }

    private static string Finish(StringBuilder line, bool cut)
    {
        if (line.Length > 0 && line[^1] == '\r')
        {
            line.Length--;
        }

        return cut ? line.Append(CutMark).ToString() : line.ToString();
    }
}
