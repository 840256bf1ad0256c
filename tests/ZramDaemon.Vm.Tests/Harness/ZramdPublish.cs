namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>One self-contained publish of zramd (scripts/publish.sh) per test run, shared by the tests that
/// need zramd without .NET: in the guest's initramfs and in the .deb.</summary>
public static class ZramdPublish
{
    private static readonly Lazy<string> Folder = new(Publish, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The folder holding the single-file executable <c>zramd</c>.</summary>
    public static string Directory => Folder.Value;

    public static string Executable => Path.Combine(Directory, "zramd");

    private static string Publish()
    {
        string folder = Path.Combine(Repository.Root, ".cache", "vm", "publish");
        ProcessResult result = ProcessRunner.Run(Path.Combine(Repository.Root, "scripts", "publish.sh"), [folder], TimeSpan.FromMinutes(10));
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException("scripts/publish.sh failed: " + result.Describe());
        }

        return folder;
    }
}
