namespace ZramDaemon.Configuration;

/// <summary>
/// Where the sockets go by default: $RUNTIME_DIRECTORY (set by systemd's RuntimeDirectory=; the first of a
/// colon-separated list), else /run/zramd when root, else $XDG_RUNTIME_DIR (the user's session).
/// </summary>
public static class RuntimePaths
{
    public const string SocketFileName = "zramd.sock";
    public const string ControlFileName = "zramd.ctl";
    public const string RootRuntimeDirectory = "/run/zramd";

    public static string? DefaultDirectory(SystemFacts facts)
    {
        ArgumentNullException.ThrowIfNull(facts);
        string? runtime = facts.Get("RUNTIME_DIRECTORY");
        if (runtime is not null)
        {
            return runtime.Split(':')[0];
        }

        return facts.IsRoot ? RootRuntimeDirectory : facts.Get("XDG_RUNTIME_DIR");
    }

    public static string RequireDefaultDirectory(SystemFacts facts) => DefaultDirectory(facts)
        ?? throw new ConfigurationException(
            "no directory for the sockets: RUNTIME_DIRECTORY and XDG_RUNTIME_DIR are unset and zramd is not root; pass --listen unix:PATH and --control PATH");

    /// <summary><paramref name="fileName"/> in <see cref="RequireDefaultDirectory"/>, checked like a socket path given
    /// (a deep runtime directory may leave no room in a Unix socket address).</summary>
    public static string RequireDefaultSocketPath(SystemFacts facts, string fileName)
    {
        string path = System.IO.Path.Combine(RequireDefaultDirectory(facts), fileName);
        return ListenAddress.TryGetSocketPath(path, out string? fullPath, out string error)
            ? fullPath
            : throw new ConfigurationException(
                $"{path}, the default socket path (in RUNTIME_DIRECTORY, else XDG_RUNTIME_DIR): {error}; pass --listen unix:PATH and --control PATH");
    }
}
