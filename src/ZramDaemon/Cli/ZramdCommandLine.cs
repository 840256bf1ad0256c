using System.CommandLine;
using System.CommandLine.Parsing;
using System.Net.Sockets;
using ZramDaemon.Attach;
using ZramDaemon.Configuration;
using ZramDaemon.Control;
using ZramDaemon.Hosting;
using ZramDaemon.Logging;

namespace ZramDaemon.Cli;

/// <summary>
/// The command line: <c>zramd [options]</c> runs the daemon; the verbs status, compact, set, stats, classes,
/// reset, idle, recompress and writeback talk to a running daemon through its control socket. Exit codes: 0 success, 1 runtime failure,
/// 64 usage error, 78 configuration error.
/// </summary>
public static class ZramdCommandLine
{
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error, DaemonRunner.Run);

    public static int Run(IReadOnlyList<string> args, TextWriter output, TextWriter error, Func<CommandLineSettings, int> runDaemon)
    {
        ArgumentNullException.ThrowIfNull(error);
        RootCommand root = Build(output, error, runDaemon);
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (ParseError parseError in parsed.Errors)
            {
                error.WriteLine($"zramd: {PrintableText.Of(parseError.Message)}");
            }

            error.WriteLine("Try 'zramd --help'.");
            return ExitCodes.Usage;
        }

        // Main ignores SIGHUP in case this is the daemon; a verb ends on it as any command.
        if (parsed.CommandResult.Command != root)
        {
            HangupSignal.Restore();
        }

        return parsed.Invoke(new InvocationConfiguration
        {
            Output = output,
            Error = error,
            EnableDefaultExceptionHandler = false,

            // The daemon handles SIGTERM itself (graceful stop); the parser must not race it.
            ProcessTerminationTimeout = null,
        });
    }

    private static RootCommand Build(TextWriter output, TextWriter error, Func<CommandLineSettings, int> runDaemon)
    {
        var listen = new Option<string[]>("--listen")
        {
            Description = "Serve NBD on unix:PATH or tcp:HOST:PORT; repeatable. Default: a Unix socket zramd.sock in "
                + "$RUNTIME_DIRECTORY, else /run/zramd as root, else $XDG_RUNTIME_DIR",
            HelpName = "ADDRESS",
            Arity = ArgumentArity.OneOrMore,
        };
        var size = new Option<string>("--size") { Description = "Device size, e.g. 512M, 4G (K/M/G/T suffixes, like zram's disksize). Default: min(RAM/2, 4G)", HelpName = "SIZE" };
        var algorithm = new Option<string>("--algorithm") { Description = "Compression: lz4 (default), lz4hc[:LEVEL], zstd[:LEVEL]", HelpName = "ALGORITHM" };
        var memLimit = new Option<string>("--mem-limit") { Description = "Most RAM a device may use, like zram's mem_limit (0: no limit)", HelpName = "SIZE" };
        var config = new Option<string>("--config")
        {
            Description = $"Configuration file (INI, zram-generator keys). Default: {SystemFacts.DefaultConfigPath} if it exists",
            HelpName = "FILE",
        };
        // Not recursive: the verbs that talk to the control socket take it, attach and detach (which do not) refuse it.
        var control = new Option<string>("--control")
        {
            Description = "The control socket. Default: $ZRAMD_CONTROL, else zramd.ctl in the runtime directory ($RUNTIME_DIRECTORY, else /run/zramd as root, else $XDG_RUNTIME_DIR), beside the default NBD socket; the daemon puts it beside its first unix --listen socket",
            HelpName = "PATH",
        };

        var root = new RootCommand("zramd: a compressed RAM block device (like Linux zram) served over NBD.\n"
            + "With no arguments it serves one device zram0 of min(RAM/2, 4G), lz4, on a Unix socket.")
        {
            listen, size, algorithm, memLimit, config, control,
        };
        root.SetAction(result => runDaemon(new CommandLineSettings
        {
            Listen = result.GetValue(listen) ?? [],
            Size = result.GetValue(size),
            Algorithm = result.GetValue(algorithm),
            MemLimit = result.GetValue(memLimit),
            ConfigPath = result.GetValue(config),
            ControlPath = result.GetValue(control),
        }));

        var json = new Option<bool>("--json") { Description = "Every mm_stat and io_stat field by its kernel name, per device, as JSON" };
        var raw = new Option<bool>("--raw") { Description = "Sizes in bytes, columns separated by one space (for scripts)" };
        var status = new Command("status", "Show the devices, like zramctl") { json, raw, control };
        status.SetAction(result => Send(result, control, output, error, new ControlRequest("status", null, null, null),
            reply => StatusTable.Write(output, reply.Devices ?? [], result.GetValue(json), result.GetValue(raw))));
        root.Add(status);

        var optionalName = new Argument<string?>("NAME") { Description = "The device (export name), e.g. zram0; all when omitted", Arity = ArgumentArity.ZeroOrOne };
        optionalName.Validators.Add(RefuseNonDeviceName);
        var compact = new Command("compact", "Compact the pool of a device (or of all), like writing to zram's compact") { optionalName, control };
        compact.SetAction(result => Send(result, control, output, error, new ControlRequest("compact", result.GetValue(optionalName), null, null), null));
        root.Add(compact);

        var setName = NameArgument();
        var assignment = new Argument<string>("SETTING") { Description = "mem_limit=SIZE (0: no limit), mem_used_max=0 (restart the peak), writeback_limit=SIZE (a day, 0: no limit) or comp_algorithm=ALGORITHM (new writes: lz4, lz4hc[:LEVEL], zstd[:LEVEL])" };
        var set = new Command("set", "Change a setting of a running device") { setName, assignment, control };
        set.SetAction(result =>
        {
            string text = result.GetValue(assignment) ?? string.Empty;
            if (!ControlRequest.TryParse($"set {result.GetValue(setName)} {text}", out ControlRequest? request, out string why))
            {
                error.WriteLine($"zramd: {PrintableText.Of(why)}");
                return ExitCodes.Usage;
            }

            if (!DeviceSetting.TryParse(request.Key!, request.Value!, out _, out string settingError))
            {
                error.WriteLine($"zramd: {PrintableText.Of(settingError)}");
                return ExitCodes.Usage;
            }

            return Send(result, control, output, error, request, null);
        });
        root.Add(set);

        foreach ((string verb, string description) in new[]
        {
            ("recompress", "Recompress a device's idle or huge pages with its recompression algorithm, like zram's recompress"),
            ("writeback", "Move a device's idle or huge pages to its backing file, like zram's writeback"),
        })
        {
            Argument<string> name = NameArgument();
            var arguments = new Argument<string[]>("ARGUMENTS")
            {
                Description = "type=idle|huge|huge_idle|all (which slots; all when omitted; writeback also incompressible: huge pages recompression could not shrink) and max_pages=N (at most N pages, the largest objects first; 0: none); recompress also takes threshold=BYTES (only objects at least that large) and algo=NAME and priority=1 (the kernel's choice of recompression algorithm: the device has one); writeback also takes page_index=N and page_indexes=LOW-HIGH, any number of each (only those pages, of the type if one is given)",
                // writeback's page words are as many as the request line holds (ControlRequest.MaxLineBytes).
                Arity = verb == "writeback" ? ArgumentArity.ZeroOrMore : new ArgumentArity(0, 5),
            };
            var command = new Command(verb, description) { name, arguments, control };
            command.SetAction(result =>
            {
                string line = string.Join(' ', new[] { verb, result.GetValue(name)! }.Concat(result.GetValue(arguments) ?? []));
                if (!ControlRequest.TryParse(line, out ControlRequest? request, out string why))
                {
                    error.WriteLine($"zramd: {PrintableText.Of(why)}");
                    return ExitCodes.Usage;
                }

                return Send(result, control, output, error, request, null);
            });
            root.Add(command);
        }

        foreach ((string verb, string description) in new[]
        {
            ("stats", "Print the mm_stat and io_stat lines of a device, in the kernel's format"),
            ("classes", "Print the per-size-class table of a device's pool"),
            ("reset", "Drop all the data of a device (refused while a client is connected)"),
            ("idle", "Mark every stored page of a device idle, like writing all to zram's idle (recompress type=idle takes them)"),
        })
        {
            Argument<string> name = NameArgument();
            var command = new Command(verb, description) { name, control };
            command.SetAction(result => Send(result, control, output, error, new ControlRequest(verb, result.GetValue(name), null, null), null));
            root.Add(command);
        }

        AddAttachVerbs(root, output, error);

        // System.CommandLine takes the root's options before a verb too (zramd --size 1G status) and the verb never
        // reads them: refuse those, but not --control before a verb that uses it (the verb reads it wherever it is).
        Option[] daemonOnly = [listen, size, algorithm, memLimit, config];
        foreach (Command verb in root.Subcommands)
        {
            bool usesControl = verb.Options.Contains(control);
            verb.Validators.Add(result => RefuseRootOptions(result, daemonOnly, usesControl ? null : control));
        }

        return root;
    }

    /// <summary>A usage error for the first option given before <paramref name="verb"/> that it does not use.</summary>
    private static void RefuseRootOptions(CommandResult verb, Option[] daemonOnly, Option? unusedControl)
    {
        string name = verb.Command.Name;
        foreach (OptionResult given in (verb.Parent as CommandResult)?.Children.OfType<OptionResult>() ?? [])
        {
            if (daemonOnly.Contains(given.Option))
            {
                verb.AddError($"{given.Option.Name} is an option of the daemon, not of {name}");
                return;
            }

            if (given.Option == unusedControl)
            {
                verb.AddError($"{given.Option.Name} is not an option of {name}: {name} does not use the control socket");
                return;
            }
        }
    }

    /// <summary>attach and detach bind a device to a kernel /dev/nbdN themselves (Attach/), without the control socket.</summary>
    private static void AddAttachVerbs(RootCommand root, TextWriter output, TextWriter error)
    {
        Argument<string> name = NameArgument();
        var device = new Argument<string?>("DEVICE") { Description = "The kernel device, /dev/nbdN; a free one when omitted", Arity = ArgumentArity.ZeroOrOne };
        var socket = new Option<string>("--socket")
        {
            Description = "The daemon's NBD listener: unix:PATH (or a bare path) or tcp:HOST:PORT. Default: zramd.sock in the default runtime directory",
            HelpName = "ADDRESS",
        };
        device.Validators.Add(RefuseNonNbdDevice);
        var ioctl = new Option<bool>("--ioctl") { Description = "Use the NBD_SET_SOCK/NBD_DO_IT ioctls, staying in the foreground while attached, instead of netlink" };
        var attach = new Command("attach", "Bind a device to a kernel /dev/nbdN through the nbd netlink interface (no nbd-client needed; needs root)")
        {
            name, device, socket, ioctl,
        };
        attach.SetAction(result =>
        {
            if (!TryResolve(() => NbdServerFor(result.GetValue(socket)), error, out string server, out int exitCode))
            {
                return exitCode;
            }

            return AttachCommand.Attach(result.GetValue(name)!, result.GetValue(device), server,
                result.GetValue(ioctl) ? NbdAttachMethod.Ioctl : null, output, error);
        });
        root.Add(attach);

        var detachDevice = new Argument<string>("DEVICE") { Description = "The kernel device, /dev/nbdN" };
        detachDevice.Validators.Add(RefuseNonNbdDevice);
        var detach = new Command("detach", "Disconnect a kernel /dev/nbdN (after swapoff or umount)") { detachDevice };
        detach.SetAction(result => AttachCommand.Detach(result.GetValue(detachDevice)!, error));
        root.Add(detach);
    }

    private static Argument<string> NameArgument()
    {
        var name = new Argument<string>("NAME") { Description = "The device (export name), e.g. zram0" };
        name.Validators.Add(RefuseNonDeviceName);
        return name;
    }

    /// <summary>As <see cref="RefuseNonDeviceName"/> for a kernel device: attach took an option it does not know
    /// (zramd attach zram0 --control) for its DEVICE and went on to connect.</summary>
    private static void RefuseNonNbdDevice(ArgumentResult result)
    {
        foreach (Token token in result.Tokens)
        {
            if (!KernelNbdAttachment.TryParseDevice(token.Value, out _))
            {
                result.AddError($"'{token.Value}' is not an nbd device: use /dev/nbdN");
                return;
            }
        }
    }

    /// <summary>A NAME that cannot be a device is a usage error here, not a question to the daemon: an option the verb
    /// does not take lands in NAME (zramd stats --size 1G zram0), and a blank one made compact take every device.</summary>
    private static void RefuseNonDeviceName(ArgumentResult result)
    {
        foreach (Token token in result.Tokens)
        {
            if (!ConfigurationLoader.IsDeviceName(token.Value))
            {
                result.AddError($"'{token.Value}' is not a device name: devices are zram0, zram1, ...");
                return;
            }
        }
    }

    private static int Send(ParseResult result, Option<string> controlOption, TextWriter output, TextWriter error, ControlRequest request, Action<ControlReply>? print)
    {
        if (!TryResolve(() => ControlPathFor(result.GetValue(controlOption)), error, out string path, out int exitCode))
        {
            return exitCode;
        }

        ControlReply reply;
        try
        {
            reply = ControlClient.SendAsync(path, request).GetAwaiter().GetResult();
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AccessDenied)
        {
            // The daemon may well be running: the socket (mode 0600) or its directory is not ours to reach.
            error.WriteLine($"zramd: permission denied at {path} ({e.Message}): the control socket is its owner's only (mode 0600; root's under systemd): run the verb as that user, e.g. with sudo.");
            return ExitCodes.Failure;
        }
        catch (SocketException e) when (!File.Exists(path))
        {
            error.WriteLine($"zramd: no control socket at {path} ({e.SocketErrorCode}): is zramd running? Pass --control PATH if its control socket is elsewhere.");
            return ExitCodes.Failure;
        }
        catch (SocketException e)
        {
            error.WriteLine($"zramd: no daemon answers at {path} ({e.Message}): is zramd running? Pass --control PATH if its control socket is elsewhere.");
            return ExitCodes.Failure;
        }
        catch (OperationCanceledException)
        {
            error.WriteLine($"zramd: the daemon at {path} did not answer in time.");
            return ExitCodes.Failure;
        }

        if (!reply.Ok)
        {
            error.WriteLine($"zramd: {PrintableText.Of(reply.Error ?? string.Empty)}");
            return ExitCodes.Failure;
        }

        if (print is not null)
        {
            print(reply);
        }
        else if (!string.IsNullOrEmpty(reply.Text))
        {
            output.Write(reply.Text.EndsWith('\n') ? reply.Text : reply.Text + "\n");
        }

        return ExitCodes.Success;
    }

    /// <summary>A socket address a verb needs, or its one error line and exit code (a bad option, no runtime directory).</summary>
    private static bool TryResolve(Func<string> resolve, TextWriter error, out string value, out int exitCode)
    {
        try
        {
            value = resolve();
            exitCode = ExitCodes.Success;
            return true;
        }
        catch (ConfigurationException e)
        {
            error.WriteLine($"zramd: {PrintableText.Of(e.Message)}");
            value = string.Empty;
            exitCode = e.ExitCode;
            return false;
        }
    }

    /// <summary>--control, else $ZRAMD_CONTROL, else zramd.ctl in the default runtime directory; checked as the
    /// daemon checks it.</summary>
    /// <exception cref="ConfigurationException">The path is not one a Unix socket can have.</exception>
    private static string ControlPathFor(string? option)
    {
        if (option is not null)
        {
            return ConfigurationLoader.ControlSocketPath(new Setting(option, "option --control", true));
        }

        SystemFacts facts = SystemFacts.Current();
        return facts.Get("ZRAMD_CONTROL") is { } fromEnvironment
            ? ConfigurationLoader.ControlSocketPath(new Setting(fromEnvironment, "environment variable ZRAMD_CONTROL", false))
            : RuntimePaths.RequireDefaultSocketPath(facts, RuntimePaths.ControlFileName);
    }

    /// <summary>The daemon's NBD listener from --socket (with the syntax of --listen; a bare path is unix:PATH), else
    /// zramd.sock in the default runtime directory.</summary>
    /// <exception cref="ConfigurationException">--socket is not an address.</exception>
    private static string NbdServerFor(string? option)
    {
        if (option is null)
        {
            return "unix:" + RuntimePaths.RequireDefaultSocketPath(SystemFacts.Current(), RuntimePaths.SocketFileName);
        }

        string text = option.Contains(':', StringComparison.Ordinal) ? option : "unix:" + option;
        return ListenAddress.TryParse(text, out _, out string why) ? text : throw new Setting(option, "option --socket", true).Fail(why);
    }
}
