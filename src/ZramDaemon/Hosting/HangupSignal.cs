using System.Runtime.InteropServices;
using ZramDaemon.Native;

namespace ZramDaemon.Hosting;

/// <summary>
/// SIGHUP is the reload (systemctl reload zramd). Its default action would end zramd at once, with every stored page
/// and no stop sequence, so it is caught from Main's first statement (a SIGHUP while the configuration loads killed
/// zramd before). Until the daemon serves, SIGHUPs are held; once it serves, each runs the reload it gave
/// (<see cref="ReloadWith"/>), and those held run it once then (the file may have changed since it was read). While
/// it stops they are dropped. Reloads run one at a time on a thread of their own, and SIGHUPs that come meanwhile
/// make one more: a reload that blocks (a configuration on a FIFO, a hung filesystem) holds neither the signal's
/// thread nor the stop. A verb gives SIGHUP its default action back.
/// </summary>
internal static class HangupSignal
{
    // Guards the registration, the reload, the count and whether a reload thread runs.
    private static readonly Lock Gate = new();
    private static PosixSignalRegistration? _registration;
    private static Action? _reload;
    private static bool _reloading;

    /// <summary>SIGHUPs not acted on yet.</summary>
    private static int _held;

    /// <summary>From now on SIGHUP no longer ends the process; it is held. Call first in Main.</summary>
    public static void Ignore()
    {
        lock (Gate)
        {
            if (_registration is not null)
            {
                return;
            }

            // SIGHUP may come in ignored: from nohup or a shell's trap '' HUP, or from SwapSafety's re-exec, which
            // ignored it across execve (that sets a handled signal back to its default). .NET installs no handler over
            // an ignored signal, so there would be no reload: the default goes back for the microseconds until the
            // handler is in, as a daemon that handles SIGHUP sets its own disposition whatever it inherited.
            Interop.Libc.Signal(Interop.Libc.SigHup, Interop.Libc.SigDfl);

            _registration = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnHangup);
        }
    }

    /// <summary>SIGHUP's default action again, for a verb: it ends as any command does.</summary>
    public static void Restore()
    {
        lock (Gate)
        {
            _registration?.Dispose();
            _registration = null;
        }
    }

    /// <summary>Each SIGHUP runs <paramref name="reload"/> from now on, one at a time, and one held since Main runs it
    /// now; after disposing (the stop) SIGHUP is dropped. A reload under way is not waited for: it must end itself
    /// (<see cref="ConfigurationReload.Stop"/>).</summary>
    public static IDisposable ReloadWith(Action reload)
    {
        Ignore();
        lock (Gate)
        {
            _reload = reload;
        }

        RunHeld();
        return new Unregistration();
    }

    private static void OnHangup(PosixSignalContext context)
    {
        context.Cancel = true;
        lock (Gate)
        {
            _held++;
        }

        RunHeld();
    }

    /// <summary>Starts the reload thread when SIGHUPs are held, a reload is set and none runs.</summary>
    private static void RunHeld()
    {
        lock (Gate)
        {
            if (_reload is null || _reloading || _held == 0)
            {
                return;
            }

            _reloading = true;
        }

        new Thread(ReloadWhileHeld) { IsBackground = true, Name = "zramd-reload" }.Start();
    }

    private static void ReloadWhileHeld()
    {
        while (true)
        {
            Action reload;
            lock (Gate)
            {
                if (_reload is null || _held == 0)
                {
                    _reloading = false;
                    return;
                }

                _held = 0;
                reload = _reload;
            }

            reload();
        }
    }

    private sealed class Unregistration : IDisposable
    {
        public void Dispose()
        {
            lock (Gate)
            {
                _reload = null;
                _held = 0;
            }
        }
    }
}
