using System.Diagnostics;
using System.Globalization;
using ZramDaemon.Tests.Daemon;
using ZramDaemon.Tests.Repository;

namespace ZramDaemon.Tests.Systemd;

/// <summary>
/// systemd/zramd.service as written, under a real systemd: systemd-nspawn boots systemd as PID 1 of a container
/// whose root is a tmpfs with the host's /usr (--volatile=yes), so nothing of the host changes. The unit gets a
/// drop-in that only replaces ExecStart (the package's /usr/bin/zramd is not installed here) with the zramd.dll
/// these tests were built with; every other directive (Type=notify, RuntimeDirectory=, the capability bounding
/// set, the sandboxing, the system call filter) is the unit's own. A oneshot unit inside runs the checks with
/// systemctl, nbdinfo and nbdcopy, writes what it saw to a shared directory, and powers the container off.
/// </summary>
public sealed class ZramdUnitUnderSystemdTests : IDisposable
{
    private const string CheckScript = """
        out=/out/result
        say() { echo "$1=$2" >> $out; }
        systemctl start zramd.service; say start_rc $?
        for p in ActiveState SubState StatusText MainPID NRestarts; do say $p "$(systemctl show -p $p --value zramd.service)"; done
        pid=$(systemctl show -p MainPID --value zramd.service)
        # (not awk: /usr/bin/awk is a symlink through /etc/alternatives, and this container's /etc is empty)
        for f in CapBnd NoNewPrivs Seccomp; do say $f "$(sed -n "s/^$f:[[:space:]]*//p" /proc/$pid/status)"; done
        say sock "$(stat -c '%a %G' /run/zramd/zramd.sock)"
        say ctl "$(stat -c '%a' /run/zramd/zramd.ctl)"
        say runtime_dir "$(stat -c '%a' /run/zramd)"
        say size "$(nbdinfo --size 'nbd+unix:///zram0?socket=/run/zramd/zramd.sock')"
        nbdcopy /opt/check/data.bin 'nbd+unix:///zram0?socket=/run/zramd/zramd.sock'; say copy_rc $?
        # STATUS= is refreshed every 5 s: wait for the one that counts the data.
        for i in $(seq 60); do
          status=$(systemctl show -p StatusText --value zramd.service)
          case "$status" in "zram0: data 1M"*) break;; esac
          sleep 1
        done
        say status_after_write "$status"
        systemctl stop zramd.service; say stop_rc $?
        for p in ActiveState Result ExecMainStatus; do say after_$p "$(systemctl show -p $p --value zramd.service)"; done
        journalctl -u zramd.service --no-pager -o cat > /out/journal
        say done 1
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-nspawn-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string relative, string text)
    {
        string path = Path.Combine(_dir, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public async Task The_unit_starts_zramd_as_type_notify_serves_refreshes_its_status_and_stops_it_with_success()
    {
        string root = RepositoryRoot.Path;
        string bin = Path.GetDirectoryName(ZramdProcess.DllPath)!;
        Write("units/zramd.service.d/test.conf", "[Service]\nExecStart=\nExecStart=/usr/bin/dotnet /opt/zramd/zramd.dll --config /etc/zramd/zramd.conf\n");
        Write("units/zramd-check.target", "[Unit]\nRequires=zramd-check.service\nAfter=zramd-check.service\n");
        Write("units/zramd-check.service", "[Service]\nType=oneshot\nExecStart=/bin/bash /opt/check/check.sh\nExecStopPost=/bin/systemctl --no-block poweroff\n");
        Write("check/check.sh", CheckScript.ReplaceLineEndings("\n"));
        Write("etc-zramd/zramd.conf", "[zram0]\nzram-size = 64M\n");
        byte[] data = new byte[1 << 20];
        for (int i = 0; i < data.Length; i += 64)
        {
            System.Text.Encoding.ASCII.GetBytes($"page {i / 4096,6} line {i % 4096,4} of text, compressible..  \n").CopyTo(data, i);
        }

        File.WriteAllBytes(Path.Combine(_dir, "check", "data.bin"), data);
        Directory.CreateDirectory(Path.Combine(_dir, "out"));

        var info = new ProcessStartInfo("systemd-nspawn") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[]
        {
            "-D", "/", "--volatile=yes", "--register=no", "--keep-unit", "--console=pipe",
            // A name of its own: nspawn keeps per-name state in /run/systemd/nspawn, and other checkouts may run this at once.
            $"--machine=zramd-test-{Guid.NewGuid():N}"[..32],
            // What the unit's bounding set keeps must exist in the container for the unit to grant it.
            "--capability=CAP_IPC_LOCK,CAP_SYS_RESOURCE",
            $"--bind-ro={Path.Combine(root, "systemd", "zramd.service")}:/etc/systemd/system/zramd.service",
            $"--bind-ro={Path.Combine(_dir, "units", "zramd.service.d")}:/etc/systemd/system/zramd.service.d",
            $"--bind-ro={Path.Combine(_dir, "units", "zramd-check.service")}:/etc/systemd/system/zramd-check.service",
            $"--bind-ro={Path.Combine(_dir, "units", "zramd-check.target")}:/etc/systemd/system/zramd-check.target",
            $"--bind-ro={Path.Combine(_dir, "etc-zramd")}:/etc/zramd",
            $"--bind-ro={bin}:/opt/zramd",
            $"--bind-ro={Path.Combine(_dir, "check")}:/opt/check",
            $"--bind={Path.Combine(_dir, "out")}:/out",
            "-b", "systemd.unit=zramd-check.target",
        })
        {
            info.ArgumentList.Add(arg);
        }

        using var nspawn = Process.Start(info)!;
        Task<string> stdout = nspawn.StandardOutput.ReadToEndAsync();
        Task<string> stderr = nspawn.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(300));
        try
        {
            await nspawn.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            nspawn.Kill(entireProcessTree: true);
            Assert.Fail("the container did not power off within 300 s:\n" + await stderr);
        }

        string resultPath = Path.Combine(_dir, "out", "result");
        Assert.True(File.Exists(resultPath), $"the check did not run; systemd-nspawn exit {nspawn.ExitCode}:\n{await stdout}\n{await stderr}");
        Dictionary<string, string> r = File.ReadAllLines(resultPath)
            .Select(l => l.Split('=', 2)).Where(kv => kv.Length == 2).ToDictionary(kv => kv[0], kv => kv[1]);
        string journal = File.ReadAllText(Path.Combine(_dir, "out", "journal"));
        string context = string.Join('\n', r.Select(kv => $"{kv.Key}={kv.Value}")) + "\n--- journal\n" + journal;
        Assert.True(r.ContainsKey("done"), context);

        // Type=notify: systemctl start returns once READY=1 came, with the STATUS= sent with it.
        Assert.Equal("0", r["start_rc"]);
        Assert.Equal("active", r["ActiveState"]);
        Assert.Equal("running", r["SubState"]);
        Assert.Equal("0", r["NRestarts"]);
        Assert.StartsWith("serving zram0 (64M lz4) on unix:/run/zramd/zramd.sock", r["StatusText"], StringComparison.Ordinal);

        // RuntimeDirectory=zramd (0755) holds the sockets: NBD 0660 group disk, control 0600.
        Assert.Equal("755", r["runtime_dir"]);
        Assert.Equal("660 disk", r["sock"]);
        Assert.Equal("600", r["ctl"]);
        Assert.Equal((64L << 20).ToString(CultureInfo.InvariantCulture), r["size"]);
        Assert.Equal("0", r["copy_rc"]);
        Assert.Matches(@"^zram0: data 1M, compr \S+, ratio [0-9.]+, 0 clients$", r["status_after_write"]);

        // The sandbox is in force: no capability outside the unit's bounding set, no new privileges, seccomp on.
        const ulong Allowed = (1UL << 0) | (1UL << 14) | (1UL << 21) | (1UL << 24); // CHOWN IPC_LOCK SYS_ADMIN SYS_RESOURCE
        Assert.True(ulong.TryParse(r["CapBnd"], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong bounding), context);
        Assert.True((bounding & ~Allowed) == 0, $"capabilities beyond the unit's bounding set: {bounding:x}");
        Assert.True((bounding & 1) != 0, "CAP_CHOWN (for the disk group) is kept");
        Assert.Equal("1", r["NoNewPrivs"]);
        Assert.Equal("2", r["Seccomp"]);

        // Within the sandbox, zramd either locked its memory or said what to grant (this machine may lack it).
        Assert.True(
            journal.Contains("memory locked (mlockall", StringComparison.Ordinal) || journal.Contains("could not lock memory", StringComparison.Ordinal),
            journal);

        // SIGTERM from systemctl stop: clean exit 0, which systemd records as success.
        Assert.Equal("0", r["stop_rc"]);
        Assert.Equal("inactive", r["after_ActiveState"]);
        Assert.Equal("success", r["after_Result"]);
        Assert.Equal("0", r["after_ExecMainStatus"]);
        Assert.Contains("stopping: no clients connected", journal, StringComparison.Ordinal);
        Assert.Contains("stopped", journal, StringComparison.Ordinal);
    }
}
