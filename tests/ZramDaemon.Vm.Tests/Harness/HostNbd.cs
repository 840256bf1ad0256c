using System.Globalization;

namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>Reads an export from the host with Debian's libnbd tools, a second real client beside the guest's kernel.</summary>
public static class HostNbd
{
    // nbdsh is a shell wrapper that runs whichever python3 is first on PATH; only Debian's has the nbd module.
    private static readonly Dictionary<string, string> DebianPython = new() { ["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin" };

    public static string Uri(string socket, string export = "zram0") => $"nbd+unix:///{export}?socket={socket}";

    /// <summary>SHA-256 (hex) of <paramref name="length"/> bytes at <paramref name="offset"/>, read with nbdsh.</summary>
    public static string Sha256(string socket, long offset, long length)
    {
        string script = "import hashlib; print('sha256=' + hashlib.sha256(h.pread("
            + length.ToString(CultureInfo.InvariantCulture) + ", " + offset.ToString(CultureInfo.InvariantCulture) + ")).hexdigest())";
        ProcessResult result = ProcessRunner.Run("nbdsh", ["-u", Uri(socket), "-c", script], TimeSpan.FromSeconds(60), DebianPython);
        Assert.True(result.ExitCode == 0, "nbdsh failed: " + result.Describe());
        return KeyValueLines.Parse(result.StandardOutput, string.Empty)["sha256"];
    }
}
