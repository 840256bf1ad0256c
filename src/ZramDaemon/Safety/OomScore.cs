namespace ZramDaemon.Safety;

/// <summary>
/// Tells the kernel's OOM killer never to pick the daemon: killing the process that holds swapped-out pages
/// loses them all (and the memory would not come back anyway until the owners of the pages die too).
/// </summary>
internal static class OomScore
{
    public const int NeverKill = -1000;

    private const string AdjustPath = "/proc/self/oom_score_adj";

    /// <summary>Returns null on success, or why it failed.</summary>
    public static string? SetNeverKill()
    {
        try
        {
            File.WriteAllText(AdjustPath, "-1000\n");
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return e.Message;
        }
    }

    public static int? Read()
    {
        try
        {
            return int.Parse(File.ReadAllText(AdjustPath).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }
}
