namespace ZramDaemon.Tests.Daemon;

/// <summary>A process's threads as /proc shows them.</summary>
internal static class ProcThreads
{
    /// <summary>
    /// The fields of the stat line after "TID (comm) " (state first: field N of proc(5) is index N - 3) of each
    /// thread of process <paramref name="pid"/> whose name starts with <paramref name="prefix"/>. A thread may exit
    /// between the listing and the reads (the runtime's own come and go): it is left out.
    /// </summary>
    public static List<string[]> StatFields(int pid, string prefix)
        => Directory.GetDirectories($"/proc/{pid}/task")
            .Select(t => (Comm: ReadOrNull(Path.Combine(t, "comm")), Stat: ReadOrNull(Path.Combine(t, "stat"))))
            .Where(t => t.Comm is not null && t.Stat is not null && t.Comm.StartsWith(prefix, StringComparison.Ordinal))
            .Select(t => t.Stat![(t.Stat!.LastIndexOf(')') + 2)..].Split(' '))
            .ToList();

    private static string? ReadOrNull(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException) // DirectoryNotFoundException, FileNotFoundException: the thread is gone
        {
            return null;
        }
    }
}
