using ZramDaemon.Vm.Tests.Harness;

namespace ZramDaemon.Vm.Tests.Systemd;

/// <summary>A temporary copy of unit files with /usr/bin/zramd replaced by a real zramd executable, so that
/// systemd-analyze verify can check that the command exists without zramd installed on this machine.</summary>
internal static class UnitFolder
{
    public static string CopyWithZramd(string source, string zramd)
    {
        string folder = Directory.CreateTempSubdirectory("zramd-units-").FullName;
        foreach (string file in Directory.EnumerateFiles(source))
        {
            if (file.EndsWith(".service", StringComparison.Ordinal) || file.EndsWith(".mount", StringComparison.Ordinal))
            {
                File.WriteAllText(Path.Combine(folder, Path.GetFileName(file)),
                    File.ReadAllText(file).Replace("/usr/bin/zramd", zramd, StringComparison.Ordinal));
            }
        }

        return folder;
    }
}
