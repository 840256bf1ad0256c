using System.Buffers.Binary;
using System.Diagnostics;
using Nbd.Protocol;
using Xunit.Abstractions;

namespace Nbd.Tests.Fuzz;

/// <summary>
/// Runs <see cref="NbdFuzzTarget"/> in the test run: the recorded transcripts of real clients as they are,
/// hand-made refused requests, and then a time-boxed loop over random bytes and mutated transcripts (in both
/// modes). Set NBD_FUZZ_SEED to replay a run; NBD_FUZZ_SECONDS to run longer than the default 20 s.
/// </summary>
[Collection(FuzzCollection.Name)]
public class NbdFuzzTests(ITestOutputHelper output)
{
    private const int MaxIterations = 200_000;

    private static readonly ulong[] InterestingNumbers =
    [
        0, 1, 511, 512, 4095, 4096, 65535, 65536, 65537, NbdFuzzTarget.DeviceSize - 512, NbdFuzzTarget.DeviceSize,
        NbdFuzzTarget.DeviceSize + 512, int.MaxValue, uint.MaxValue, 1UL << 32, long.MaxValue, ulong.MaxValue,
        ulong.MaxValue - 511, 16 << 20, (16 << 20) + 1,
    ];

    public static TheoryData<string> SeedNames() => [.. Seeds().Select(s => s.Name)];

    [Theory]
    [MemberData(nameof(SeedNames))]
    public void A_recorded_transcript_replays_cleanly_in_both_modes(string name)
    {
        byte[] transcript = Seeds().Single(s => s.Name == name).Bytes;
        NbdFuzzTarget.Execute([0, .. transcript]);
        byte[]? requests = NbdFuzzTarget.TransmissionPart(transcript);
        Assert.NotNull(requests);
        FuzzOutcome outcome = NbdFuzzTarget.Execute([1, .. requests]);
        Assert.Equal(outcome.Requests, outcome.Replies);
        if (name is "nbdsh" or "qemu-io" or "qemu-img-convert")
        {
            // These clients wrote: the oracle had device mutations to match, it was not checking nothing.
            Assert.True(outcome.Mutations > 0, $"{name}: no mutation reached the device");
        }
    }

    [Fact]
    public void Refused_requests_never_reach_the_device()
    {
        const int size = NbdFuzzTarget.DeviceSize;
        var input = new MemoryStream();
        input.WriteByte(1);
        Request(input, CommandType.Write, 1, size, 512);                 // past the end: ENOSPC
        Request(input, CommandType.Write, 2, 100, 512);                  // unaligned: EINVAL
        Request(input, CommandType.Write, 3, 0, 0);                      // empty: EINVAL
        Request(input, CommandType.Write, 4, 0, 128 * 1024);             // over MaxPayload: EINVAL
        Request(input, CommandType.Write, 5, 0, 512, flags: 0x80);       // unknown flag: EINVAL
        Request(input, CommandType.Trim, 6, ulong.MaxValue - 511, 1024); // offset + length wraps: EINVAL
        Request(input, CommandType.WriteZeroes, 7, size - 512, 1024);    // crosses the end: ENOSPC
        Request(input, CommandType.Write, 8, 4096, 512);                 // the one valid request
        FuzzOutcome outcome = NbdFuzzTarget.Execute(input.ToArray());
        Assert.Equal(new FuzzOutcome(true, 8, 8, 1), outcome);
    }

    [Fact]
    public void Random_and_mutated_inputs_find_nothing()
    {
        int seed = Environment.GetEnvironmentVariable("NBD_FUZZ_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Environment.TickCount;
        double seconds = Environment.GetEnvironmentVariable("NBD_FUZZ_SECONDS") is { } t ? double.Parse(t, System.Globalization.CultureInfo.InvariantCulture) : 20;
        var random = new Random(seed);
        byte[][] corpus = [.. Seeds().SelectMany(s => new[] { s.Bytes, NbdFuzzTarget.TransmissionPart(s.Bytes) ?? [] })];

        NbdFuzzTarget.Execute([1, .. NbdFuzzTarget.TransmissionPart(corpus[0]) ?? []]);
        long idle = Settle();
        var clock = Stopwatch.StartNew();
        int iterations = 0, transmission = 0, checkedWithMutations = 0;
        long peak = idle;
        for (; iterations < MaxIterations && clock.Elapsed.TotalSeconds < seconds; iterations++)
        {
            byte[] input = random.Next(4) == 0 ? RandomBytes(random) : Mutate(random, corpus);
            try
            {
                FuzzOutcome outcome = NbdFuzzTarget.Execute(input);
                transmission += outcome.Transmission ? 1 : 0;
                checkedWithMutations += outcome.Transmission && outcome.Mutations > 0 ? 1 : 0;
            }
            catch (FuzzFindingException e)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed}, iteration {iterations}, input {Convert.ToHexString(input.AsSpan(0, Math.Min(input.Length, 256)))}: {e.Message}");
            }

            if (iterations % 500 == 0)
            {
                peak = Math.Max(peak, GC.GetTotalMemory(false));
            }
        }

        double rate = iterations / clock.Elapsed.TotalSeconds;
        long settled = Settle();
        output.WriteLine($"seed {seed}: {iterations} inputs in {clock.Elapsed.TotalSeconds:F1} s ({rate:F0}/s), {transmission} in transmission mode, " +
            $"{checkedWithMutations} checked against device writes; managed heap {idle >> 10} KiB idle, {peak >> 10} KiB peak, {settled >> 10} KiB after");
        Assert.True(iterations >= 200, $"only {iterations} inputs ran");
        Assert.True(checkedWithMutations > 0, "no input reached the device through the oracle");
        // Bounded memory: nothing a session allocates survives it (generous: pools keep some buffers warm).
        Assert.True(settled - idle < 32 << 20, $"managed heap grew from {idle >> 10} KiB to {settled >> 10} KiB");
    }

    private static long Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(true);
    }

    private static void Request(MemoryStream input, CommandType type, ulong cookie, ulong offset, uint length, ushort flags = 0)
    {
        var header = new byte[RequestHeader.Size];
        new RequestHeader(NbdMagic.Request, (CommandFlags)flags, type, cookie, offset, length).Write(header);
        input.Write(header);
        if (type == CommandType.Write)
        {
            input.Write(new byte[length]);
        }
    }

    private static byte[] RandomBytes(Random random)
    {
        var input = new byte[random.Next(1, 512)];
        random.NextBytes(input);
        return input;
    }

    /// <summary>One to four mutations of a corpus entry, AFL-style, behind a random mode byte.</summary>
    private static byte[] Mutate(Random random, byte[][] corpus)
    {
        var data = new List<byte>(corpus[random.Next(corpus.Length)]);
        int rounds = random.Next(1, 5);
        for (int r = 0; r < rounds; r++)
        {
            int at = data.Count == 0 ? 0 : random.Next(data.Count);
            switch (random.Next(7))
            {
                case 0 when data.Count > 0:
                    data[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1 when data.Count > 0:
                    data[at] = (byte)random.Next(256);
                    break;
                case 2 when data.Count >= 8:
                {
                    // An interesting number over a 2, 4 or 8 byte big-endian field.
                    int width = 2 << random.Next(3);
                    at = random.Next(data.Count - width + 1);
                    Span<byte> field = stackalloc byte[8];
                    BinaryPrimitives.WriteUInt64BigEndian(field, InterestingNumbers[random.Next(InterestingNumbers.Length)]);
                    for (int i = 0; i < width; i++)
                    {
                        data[at + i] = field[8 - width + i];
                    }

                    break;
                }

                case 3:
                    data.InsertRange(at, RandomBytes(random).Take(random.Next(1, 64)));
                    break;
                case 4 when data.Count > 0:
                    data.RemoveRange(at, Math.Min(data.Count - at, random.Next(1, 64)));
                    break;
                case 5 when data.Count > 0:
                    data.RemoveRange(at, data.Count - at); // truncation
                    break;
                case 6 when data.Count > 0:
                {
                    // Splice: a piece of another entry (a request or option from elsewhere) inserted here.
                    byte[] other = corpus[random.Next(corpus.Length)];
                    if (other.Length > 0)
                    {
                        int from = random.Next(other.Length);
                        data.InsertRange(at, other.Skip(from).Take(random.Next(1, 256)));
                    }

                    break;
                }
            }
        }

        return [(byte)random.Next(8), .. data];
    }

    private static IEnumerable<(string Name, byte[] Bytes)> Seeds() =>
        Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Fuzz", "Seeds"), "*.bin")
            .Order(StringComparer.Ordinal)
            .Select(path => (Path.GetFileNameWithoutExtension(path), File.ReadAllBytes(path)));
}
