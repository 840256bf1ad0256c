using System.Reflection;

namespace ZramDaemon.Safety;

/// <summary>
/// Loads, at start, the assemblies the serving paths need, instead of at first use: the NBD handshake's first run
/// loads System.Net.Security, the control socket's first reply System.Text.Json. A load needs a
/// descriptor and memory, and one that fails (a burst of clients filling the descriptor table just then) is remembered
/// by the runtime: every later handshake would fail the same way, long after descriptors came free. Loaded before
/// mlockall, the images are locked with the rest. Found by review (a burst of 150 clients under `ulimit -n 125`:
/// about one run in eight, every later handshake failed with FileNotFoundException for System.Net.Security).
/// </summary>
internal static class AssemblyPreload
{
    /// <summary>What the serving paths load lazily otherwise: the references of Nbd (the handshake's
    /// System.Net.Security, System.Text.Encoding.Extensions) and of zramd (the control socket's System.Text.Json), and
    /// those of System.Text.Json (its encoder, System.Text.Encodings.Web) and System.Net.Security (a TLS handshake's
    /// System.Collections.NonGeneric). Direct references only: the whole closure
    /// would take about 12 MiB more of idle RSS for code the daemon never runs (measured: 58 MiB against 46).</summary>
    public static void LoadForServing()
    {
        LoadReferences(typeof(Nbd.NbdServer).Assembly);
        LoadReferences(typeof(AssemblyPreload).Assembly);
        LoadReferences(typeof(System.Text.Json.Utf8JsonWriter).Assembly);
        LoadReferences(typeof(System.Net.Security.SslStream).Assembly);
    }

    /// <summary>Loads the assemblies <paramref name="assembly"/> refers to directly. One that cannot be loaded (an
    /// optional reference not shipped) is left to fail where it is used, as before.</summary>
    private static void LoadReferences(Assembly assembly)
    {
        foreach (AssemblyName reference in assembly.GetReferencedAssemblies())
        {
            try
            {
                Assembly.Load(reference);
            }
            catch (Exception e) when (e is FileNotFoundException or FileLoadException or BadImageFormatException)
            {
            }
        }
    }
}
