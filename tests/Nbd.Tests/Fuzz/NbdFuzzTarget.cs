using System.Buffers.Binary;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Sessions;
using Nbd.Tests.Devices;

namespace Nbd.Tests.Fuzz;

/// <summary>What one fuzz input did: requests the target parsed from it and replies it saw (transmission
/// mode only), and the mutating calls that reached the device.</summary>
public readonly record struct FuzzOutcome(bool Transmission, int Requests, int Replies, int Mutations);

/// <summary>A bug the fuzz target found; libFuzzer/AFL treat the escaping exception as a crash.</summary>
public sealed class FuzzFindingException(string message) : Exception(message);

/// <summary>
/// In-process fuzz target for the NBD handshake and transmission parser, shaped for libFuzzer/AFL through
/// SharpFuzz (<c>Fuzzer.LibFuzzer.Run(s => NbdFuzzTarget.Run(s))</c>): arbitrary bytes in, an exception out
/// only on a finding. The real <see cref="NbdHandshake"/> and <see cref="NbdSession"/> run over a
/// <see cref="FuzzStream"/> against an <see cref="AuditedDevice"/> (1 MiB, 512-byte blocks).
///
/// Input layout: byte 0 selects the mode. Bit 0 clear: the rest is the whole client side of a connection
/// (client flags, options, requests). Bit 0 set: the rest is the transmission phase only, played after a fixed
/// handshake (NO_ZEROES, GO "mem", no structured replies), so every input reaches the request parser and the
/// target can check the device against the replies. Bits 1-2 pick how many bytes each read returns (all,
/// 1, 7, 4096), so split headers and payloads are exercised.
///
/// Findings: an exception escaping the server, a hang (no end within <see cref="HangLimit"/> after the input
/// ended), a device call out of bounds or unaligned, and in transmission mode: a reply not well framed, a
/// request without exactly one reply, or a device mutation that does not belong to a request of that type,
/// offset and length whose reply carried the device's own result (so a refused request never reaches the
/// device, and an accepted one is never answered with another outcome).
/// </summary>
public static class NbdFuzzTarget
{
    public const int DeviceSize = 1 << 20;
    public const int BlockSize = 512;

    /// <summary>Most generous bound for one input: it completes synchronously except for the device work.</summary>
    public static readonly TimeSpan HangLimit = TimeSpan.FromSeconds(20);

    private static readonly int[] ReadChunks = [int.MaxValue, 1, 7, 4096];
    private static readonly object Gate = new();
    private static readonly NbdServerOptions Options = new()
    {
        MaxPayload = 64 * 1024,
        MaxInFlightPerConnection = 16,
        HandshakeTimeout = TimeSpan.FromSeconds(10),
    };

    private static readonly AuditedDevice Device = new(new MemoryBlockDevice(DeviceSize), BlockSize);
    private static readonly NbdServer Server = CreateServer();
    private static readonly byte[] HandshakePrefix = BuildHandshakePrefix();

    // Measured on first use, not in the type initializer: Play runs the server on the thread pool, which
    // would wait for this type's initialization to finish.
    private static long _handshakeReplyLength = -1;

    /// <summary>The libFuzzer-style entry point: throws only on a finding.</summary>
    public static void Run(ReadOnlySpan<byte> data) => Execute(data);

    /// <summary>Runs one input; returns what it did, throws <see cref="FuzzFindingException"/> on a finding.</summary>
    public static FuzzOutcome Execute(ReadOnlySpan<byte> data)
    {
        byte mode = data.IsEmpty ? (byte)0 : data[0];
        ReadOnlySpan<byte> body = data.IsEmpty ? data : data[1..];
        bool transmission = (mode & 1) != 0;
        int chunk = ReadChunks[(mode >> 1) & 3];
        lock (Gate)
        {
            if (_handshakeReplyLength < 0)
            {
                _handshakeReplyLength = MeasureHandshakeReply();
            }

            Device.Take();
            if (!transmission)
            {
                var swallow = new ReplyScanner(-1, null);
                Play(new FuzzStream(body.ToArray(), chunk, swallow));
                (DeviceMutation[] mutations, string[] violations) = Device.Take();
                ThrowIfAny(violations);
                return new FuzzOutcome(false, 0, 0, mutations.Length);
            }

            byte[] session = [.. HandshakePrefix, .. body];
            List<ParsedRequest> requests = ParseRequests(session.AsSpan(HandshakePrefix.Length));
            Dictionary<ulong, uint> readLengths = requests.Where(r => r.Type == CommandType.Read).ToDictionary(r => r.Cookie, r => r.Length);
            var scanner = new ReplyScanner(_handshakeReplyLength, readLengths);
            Play(new FuzzStream(session, chunk, scanner));
            (DeviceMutation[] done, string[] wrong) = Device.Take();
            ThrowIfAny(wrong);
            CheckAgainstReplies(requests, scanner, done);
            return new FuzzOutcome(true, requests.Count, scanner.Replies.Count, done.Length);
        }
    }

    /// <summary>The part of a recorded client transcript after its handshake (after the first GO or
    /// EXPORT_NAME option), or null when the transcript never gets there.</summary>
    public static byte[]? TransmissionPart(byte[] transcript)
    {
        int position = 4;
        while (position + 16 <= transcript.Length)
        {
            if (BinaryPrimitives.ReadUInt64BigEndian(transcript.AsSpan(position)) != NbdMagic.IHaveOpt)
            {
                return null;
            }

            var option = (OptionType)BinaryPrimitives.ReadUInt32BigEndian(transcript.AsSpan(position + 8));
            long next = position + 16L + BinaryPrimitives.ReadUInt32BigEndian(transcript.AsSpan(position + 12));
            if (next > transcript.Length)
            {
                return null;
            }

            position = (int)next;
            if (option is OptionType.Go or OptionType.ExportName)
            {
                return transcript[position..];
            }
        }

        return null;
    }

    private static void Play(FuzzStream stream)
    {
        Task run = Task.Run(async () =>
        {
            using var timeout = new CancellationTokenSource(Options.HandshakeTimeout);
            var handshake = new NbdHandshake(Server, Options, NullLogger.Instance, 1, stream, simpleRepliesOnly: false, Options.TlsMode);
            HandshakeResult? result = await handshake.RunAsync(timeout.Token).ConfigureAwait(false);
            if (result is not null)
            {
                new NbdSession(result, Options, NullLogger.Instance, 1).Run();
            }

            await stream.DisposeAsync().ConfigureAwait(false);
        });
        if (!run.Wait(HangLimit))
        {
            throw new FuzzFindingException($"no end {HangLimit.TotalSeconds} s after the input ended");
        }

        if (run.Exception is { } e)
        {
            throw new FuzzFindingException("exception escaped the server: " + e.InnerException);
        }
    }

    private static void CheckAgainstReplies(List<ParsedRequest> requests, ReplyScanner scanner, DeviceMutation[] mutations)
    {
        if (scanner.Malformed is { } malformed)
        {
            throw new FuzzFindingException(malformed);
        }

        var replies = new Dictionary<ulong, NbdError>();
        foreach ((ulong cookie, NbdError error) in scanner.Replies)
        {
            if (!replies.TryAdd(cookie, error))
            {
                throw new FuzzFindingException($"cookie {cookie:x} answered twice");
            }
        }

        // Every request read in full is answered exactly once (the session drains before it closes).
        foreach (ParsedRequest r in requests)
        {
            if (!replies.ContainsKey(r.Cookie))
            {
                throw new FuzzFindingException($"{r.Type} cookie {r.Cookie:x} never answered");
            }
        }

        if (replies.Count != requests.Count)
        {
            throw new FuzzFindingException($"{replies.Count} replies to {requests.Count} requests");
        }

        var used = new HashSet<ulong>();
        foreach (DeviceMutation m in mutations)
        {
            ParsedRequest? owner = requests.Find(r => !used.Contains(r.Cookie) && r.Type == m.Kind
                && (long)r.Offset == m.Offset && r.Length == m.Length && replies[r.Cookie] == m.Result);
            if (owner is null)
            {
                throw new FuzzFindingException($"device {m.Kind} at {m.Offset} length {m.Length} ({m.Result}) matches no request answered so");
            }

            used.Add(owner.Value.Cookie);
        }

        // And the converse: an accepted mutating request did reach the device.
        foreach (ParsedRequest r in requests)
        {
            if (r.Type is CommandType.Write or CommandType.Trim or CommandType.WriteZeroes
                && replies[r.Cookie] == NbdError.None && !used.Contains(r.Cookie))
            {
                throw new FuzzFindingException($"{r.Type} cookie {r.Cookie:x} answered success without reaching the device");
            }
        }
    }

    /// <summary>The requests the server reads in full, as the spec frames them: a 28-byte header, a WRITE's
    /// payload after it (read or skipped by the server either way); bad magic, DISC or end of input stops.
    /// Each cookie is rewritten to the request's index: the server only echoes cookies, and real clients
    /// (qemu) reuse them once answered, which a stream played all at once would make ambiguous.</summary>
    private static List<ParsedRequest> ParseRequests(Span<byte> body)
    {
        var requests = new List<ParsedRequest>();
        long position = 0;
        while (position + RequestHeader.Size <= body.Length)
        {
            long start = position;
            var header = RequestHeader.Read(body[(int)position..]);
            if (!header.HasValidMagic || header.Type == CommandType.Disconnect)
            {
                break;
            }

            position += RequestHeader.Size + (header.Type == CommandType.Write ? (long)header.Length : 0L);
            if (position > body.Length)
            {
                break;
            }

            ulong cookie = (ulong)requests.Count;
            BinaryPrimitives.WriteUInt64BigEndian(body[(int)(start + 8)..], cookie);
            requests.Add(new ParsedRequest(header.Type, cookie, header.Offset, header.Length));
        }

        return requests;
    }

    private static void ThrowIfAny(string[] violations)
    {
        if (violations.Length > 0)
        {
            throw new FuzzFindingException(string.Join("; ", violations));
        }
    }

    private static NbdServer CreateServer()
    {
        var server = new NbdServer(Options, NullLoggerFactory.Instance);
        server.AddExport(new NbdExport("mem", "fuzzed", Device));
        return server;
    }

    private static byte[] BuildHandshakePrefix()
    {
        byte[] name = Encoding.UTF8.GetBytes("mem");
        var prefix = new byte[4 + 16 + 4 + name.Length + 2];
        BinaryPrimitives.WriteUInt32BigEndian(prefix, (uint)(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes));
        BinaryPrimitives.WriteUInt64BigEndian(prefix.AsSpan(4), NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(12), (uint)OptionType.Go);
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(16), (uint)(4 + name.Length + 2));
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(20), (uint)name.Length);
        name.CopyTo(prefix.AsSpan(24));
        return prefix; // zero information requests
    }

    private static long MeasureHandshakeReply()
    {
        var stream = new FuzzStream(HandshakePrefix, int.MaxValue, new ReplyScanner(-1, null));
        Play(stream);
        return stream.BytesWritten;
    }

    private readonly record struct ParsedRequest(CommandType Type, ulong Cookie, ulong Offset, uint Length);
}
