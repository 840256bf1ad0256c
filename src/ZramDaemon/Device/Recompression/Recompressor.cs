using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ZramDaemon.Native;

namespace ZramDaemon.Device.Recompression;

/// <summary>
/// The device's background recompressor: ages the slots (zram's idle marking, on a clock) and recompresses the
/// idle ones with the device's recompression algorithm, off the I/O path.
///
/// Idleness: every <c>idleAfter / 2</c> one pass adds one to each stored slot's 2-bit idle age; a read or write
///   of the slot sets it back to 0, so a slot reaches the top age (idle) after two to three passes untouched:
///   idle for at least <c>idleAfter</c> and at most one and a half times that. No timestamps per slot.
/// Yielding and budget: it holds one slot's lock at a time, to decompress one page or to swap in its new object
///   (not while compressing, see <see cref="ZramDevice.RecompressSlot"/>), and no lock the I/O path takes for
///   longer. It keeps working while the foreground is busy, within <c>cpuPercent</c> of one CPU: after each few
///   milliseconds of work it sleeps so that the work's CPU time (its own thread's, not the wall clock's) is that
///   share of the work and the sleep together. Its nice value (raised by <see cref="NiceFor"/>) gives it about
///   that share of a CPU another thread keeps busy, so the I/O threads go first without starving it: at nice 19,
///   as until 3 December, it got some 1.4 % of a CPU the writers kept busy (weight 15 against 1024), a seventh of
///   its default budget, and less on a loaded machine.
/// </summary>
internal sealed class Recompressor : IDisposable
{
    /// <summary>Work between two budget sleeps: short, so the sleeps are short and I/O threads get the CPU often.</summary>
    private static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(2);

    /// <summary>The longest wait ManualResetEventSlim takes (int.MaxValue ms, 24.8 days); the idle time may be years,
    /// so a longer wait ends there and the loop looks again.</summary>
    private static readonly TimeSpan LongestWait = TimeSpan.FromMilliseconds(int.MaxValue);

    private readonly ZramDevice _device;
    private readonly TimeSpan _agePeriod;
    private readonly int _cpuPercent;
    private readonly ILogger _logger;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly ManualResetEventSlim _stop = new(false);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private int _kicked;
    private long _cpuNanoseconds;

    public Recompressor(ZramDevice device, TimeSpan idleAfter, int cpuPercent, ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(idleAfter, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(cpuPercent, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(cpuPercent, 100);
        _device = device;
        _agePeriod = idleAfter / 2;
        _cpuPercent = cpuPercent;
        _logger = logger;
        _thread = new Thread(Run) { IsBackground = true, Name = $"{device.Name}-recompress" };
        _thread.Start();
    }

    /// <summary>The CPU time the thread has spent on aging and recompression (not on waiting).</summary>
    public TimeSpan CpuTime => TimeSpan.FromTicks(Interlocked.Read(ref _cpuNanoseconds) / 100);

    /// <summary>
    /// How much to raise the thread's nice value so that it gets about <paramref name="cpuPercent"/> % of a CPU that
    /// one thread at the starting nice value keeps busy: each nice step divides the scheduler weight by about 1.25
    /// (1024 at nice 0), and a weight w gets w / (1024 + w) of the CPU, so p % is a raise of
    /// log((100 - p) / p) / log 1.25: 10 for the default 10 %, 19 (the most) for 1 %, 0 from 50 % on (lowering it
    /// would need privileges, and the sleeps keep the budget anyway).
    /// </summary>
    internal static int NiceFor(int cpuPercent)
        => cpuPercent >= 50 ? 0
            : Math.Min(Interop.Libc.NiceLowest, (int)Math.Round(Math.Log((100.0 - cpuPercent) / cpuPercent) / Math.Log(1.25)));

    private void Run()
    {
        // Lower only this thread, relative to the thread that started it (the I/O threads' share against it depends on
        // the difference alone); the kernel stops at 19.
        _ = Interop.Libc.Nice(NiceFor(_cpuPercent));
        long nextAging = Stopwatch.GetTimestamp() + (long)(_agePeriod.TotalSeconds * Stopwatch.Frequency);
        int cursor = 0;
        while (!_stopping)
        {
            try
            {
                long now = Stopwatch.GetTimestamp();
                long cpuStart = ThreadCpuNanoseconds();
                if (now >= nextAging)
                {
                    _device.AgeSlots(markAll: false);
                    nextAging = Stopwatch.GetTimestamp() + (long)(_agePeriod.TotalSeconds * Stopwatch.Frequency);
                    Rest(now, cpuStart);
                    continue;
                }

                bool wrapped = _device.RecompressSlice(ref cursor, SlotSelection.Idle, Slice, out bool stoppedByLimit);
                Rest(now, cpuStart);
                // The whole table was looked at (or there is no room): nothing more until the next aging, unless
                // slots were marked idle by hand since the last look began (then look again from the start).
                if ((wrapped || stoppedByLimit) && Interlocked.Exchange(ref _kicked, 0) == 0)
                {
                    TimeSpan untilAging = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), nextAging);
                    if (untilAging > TimeSpan.Zero)
                    {
                        _wake.Wait(Capped(untilAging));
                    }

                    _wake.Reset();
                }
            }
            catch (ObjectDisposedException) when (_stopping)
            {
                break;
            }
            catch (Exception e)
            {
                ZramDeviceLog.RecompressorFailed(_logger, e, _device.Name);
                _stop.Wait(Capped(_agePeriod));
            }
        }
    }

    private static TimeSpan Capped(TimeSpan wait) => wait < LongestWait ? wait : LongestWait;

    /// <summary>Ends a wait for the next aging pass: slots were just marked idle by hand (zram's idle=all).</summary>
    public void Kick()
    {
        Volatile.Write(ref _kicked, 1);
        _wake.Set();
    }

    /// <summary>
    /// Counts the CPU time spent since <paramref name="cpuStart"/> and sleeps so that the work begun at
    /// <paramref name="wallStart"/> and the sleep together last that CPU time divided by the budget: the time other
    /// threads had the CPU during the work counts towards the sleep, so a thread kept waiting still gets its
    /// budget, and one long piece of work (training a dictionary) is paid for in full.
    /// </summary>
    private void Rest(long wallStart, long cpuStart)
    {
        long cpu = ThreadCpuNanoseconds() - cpuStart;
        Interlocked.Add(ref _cpuNanoseconds, cpu);
        if (_cpuPercent >= 100 || _stopping)
        {
            return;
        }

        double seconds = (cpu / 1e9 * 100 / _cpuPercent) - Stopwatch.GetElapsedTime(wallStart).TotalSeconds;
        if (seconds > 0)
        {
            _stop.Wait(TimeSpan.FromSeconds(seconds));
        }
    }

    /// <summary>The calling thread's CPU time so far, in nanoseconds.</summary>
    internal static long ThreadCpuNanoseconds()
    {
        Span<long> time = stackalloc long[2];
        if (Interop.Libc.ClockGetTime(Interop.Libc.ClockThreadCpuTimeId, time) != 0)
        {
            throw new InvalidOperationException($"clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed: errno {Marshal.GetLastPInvokeError()}");
        }

        return (time[0] * 1_000_000_000) + time[1];
    }

    public void Dispose()
    {
        _stopping = true;
        _stop.Set();
        _wake.Set();
        _thread.Join();
        _wake.Dispose();
        _stop.Dispose();
    }
}
