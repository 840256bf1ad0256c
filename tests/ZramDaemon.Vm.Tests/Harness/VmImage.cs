namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>
/// The kernel and initramfs the guest boots, made by scripts/vm/initramfs.sh (which fetches Debian's cloud
/// kernel into .cache/vm once). <see cref="Build"/> may add files, e.g. a zramd publish for the attach test.
/// </summary>
public sealed class VmImage
{
    private VmImage(string kernel, string initrd)
    {
        Kernel = kernel;
        Initrd = initrd;
    }

    public string Kernel { get; }

    public string Initrd { get; }

    /// <param name="name">names the initramfs file, so that images with different contents coexist.</param>
    /// <param name="additions">host path = guest path pairs copied into the image.</param>
    public static VmImage Build(string name, params string[] additions) => Run(name, [], additions);

    /// <summary>An image whose /init is Debian's systemd (initramfs.sh --systemd): it boots to multi-user.target
    /// with <paramref name="enable"/> enabled (systemctl --root enable, the units' [Install] sections) and runs
    /// guest/systemd.sh, which runs the test named by ZT_TEST when that is not systemd.</summary>
    /// <param name="packages">Debian packages of the host whose files the image holds besides systemd's.</param>
    public static VmImage BuildSystemd(string name, IEnumerable<string> enable, IEnumerable<string> packages, params string[] additions) =>
        Run(name, ["--systemd", .. enable.SelectMany(unit => (string[])["--enable", unit]),
            .. packages.SelectMany(package => (string[])["--package", package])], additions);

    private static VmImage Run(string name, IEnumerable<string> options, string[] additions)
    {
        var arguments = new List<string> { "--name", name };
        arguments.AddRange(options);
        foreach (string add in additions)
        {
            arguments.Add("--add");
            arguments.Add(add);
        }

        ProcessResult result = ProcessRunner.Run(Path.Combine(Repository.VmScripts, "initramfs.sh"), arguments, TimeSpan.FromMinutes(5));
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException("initramfs.sh failed: " + result.Describe());
        }

        var values = KeyValueLines.Parse(result.StandardOutput, prefix: string.Empty);
        return new VmImage(values["kernel"], values["initrd"]);
    }
}
