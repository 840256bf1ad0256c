using System.Diagnostics;
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
/// Yielding: the thread runs at nice 19, so on a busy machine the scheduler prefers the I/O threads, and it
///   holds one slot's lock at a time (a decompress and a compress of one page). Its CPU budget: after each
///   few milliseconds of work it sleeps long enough that work takes at most <c>cpuPercent</c> of its time.
/// </summary>
internal sealed class Recompressor : IDisposable
{
    /// <summary>Work between two budget sleeps: short, so the sleeps are short and I/O threads get the CPU often.</summary>
    private static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(2);

    private readonly ZramDevice _device;
    private readonly TimeSpan _agePeriod;
    private readonly int _cpuPercent;
    private readonly ILogger _logger;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly ManualResetEventSlim _stop = new(false);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private int _kicked;

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

    private void Run()
    {
        // Lower only this thread (a Linux nice value is per thread); failure leaves it at the default.
        _ = Interop.Libc.SetPriority(Interop.Libc.PrioProcess, (uint)Interop.Libc.GetTid(), Interop.Libc.NiceLowest);
        long nextAging = Stopwatch.GetTimestamp() + (long)(_agePeriod.TotalSeconds * Stopwatch.Frequency);
        int cursor = 0;
        while (!_stopping)
        {
            try
            {
                long now = Stopwatch.GetTimestamp();
                if (now >= nextAging)
                {
                    long started = now;
                    _device.AgeSlots(markAll: false);
                    nextAging = Stopwatch.GetTimestamp() + (long)(_agePeriod.TotalSeconds * Stopwatch.Frequency);
                    Rest(Stopwatch.GetTimestamp() - started);
                    continue;
                }

                long sliceStart = Stopwatch.GetTimestamp();
                bool wrapped = _device.RecompressSlice(ref cursor, SlotSelection.Idle, Slice, out bool stoppedByLimit);
                Rest(Stopwatch.GetTimestamp() - sliceStart);
                // The whole table was looked at (or there is no room): nothing more until the next aging, unless
                // slots were marked idle by hand since the last look began (then look again from the start).
                if ((wrapped || stoppedByLimit) && Interlocked.Exchange(ref _kicked, 0) == 0)
                {
                    TimeSpan untilAging = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), nextAging);
                    if (untilAging > TimeSpan.Zero)
                    {
                        _wake.Wait(untilAging);
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
                _stop.Wait(_agePeriod);
            }
        }
    }

    /// <summary>Ends a wait for the next aging pass: slots were just marked idle by hand (zram's idle=all).</summary>
    public void Kick()
    {
        Volatile.Write(ref _kicked, 1);
        _wake.Set();
    }

    /// <summary>Sleeps so that <paramref name="workTicks"/> of work stays within the CPU budget.</summary>
    private void Rest(long workTicks)
    {
        if (_cpuPercent >= 100 || _stopping)
        {
            return;
        }

        double seconds = (double)workTicks / Stopwatch.Frequency * (100 - _cpuPercent) / _cpuPercent;
        if (seconds > 0)
        {
            _stop.Wait(TimeSpan.FromSeconds(Math.Min(seconds, 1)));
        }
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
