using System.Buffers.Binary;
using System.Net.Sockets;
using Nbd.Devices;
using Nbd.Protocol;
using Nbd.Tests.Interop;

namespace Nbd.Tests.Sessions;

/// <summary>
/// Randomized corruption over real sockets: a valid client conversation (options, GO, requests, DISC) is
/// mutated (bit flips, overwritten length fields, truncation, inserted garbage, requests after DISC) and sent.
/// The server must frame every handshake answer correctly, end or keep each bad connection without hanging or
/// crashing (an exception escaping a pool thread would kill this test process), and keep serving a witness
/// connection throughout. The seed is printed on failure.
/// </summary>
public class MalformedInputTests
{
    private const int Iterations = 300;

    [Fact]
    public async Task Corrupted_conversations_never_hurt_the_server_or_other_connections()
    {
        int seed = Environment.GetEnvironmentVariable("NBD_FUZZ_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Environment.TickCount;
        var random = new Random(seed);
        // The witness uses its own export: a mutated offset can land anywhere on the fuzzers' one.
        await using var server = new TestServer(
            new NbdServerOptions { MaxPayload = 1 << 20, HandshakeTimeout = TimeSpan.FromSeconds(5) },
            new NbdExport("mem", "fuzzed", new Devices.MemoryBlockDevice(16 << 20)),
            new NbdExport("witness", "untouched", new Devices.MemoryBlockDevice(16 << 20)));
        using RawClient witness = await RawClient.ConnectAsync(server.SocketPath);
        await witness.StartAsync();
        Assert.Equal(OptionReplyType.Ack, (await witness.GoAsync("witness")).Final);
        byte[] pattern = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7)).ToArray();
        await witness.SendRequestAsync(CommandType.Write, 1, 15 << 20, 4096, 0, pattern);
        Assert.Equal(NbdError.None, (await witness.ReadSimpleReplyAsync())!.Value.Error);

        for (int i = 0; i < Iterations; i++)
        {
            byte[] conversation = Mutate(random, BuildConversation(random), out string mutation);
            try
            {
                await RunOneAsync(server, conversation, halfClose: random.Next(2) == 0);
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed}, iteration {i}, mutation {mutation}: {e}");
            }
            catch (Xunit.Sdk.XunitException e)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed}, iteration {i}, mutation {mutation}: {e.Message}");
            }

            if (i % 25 == 0)
            {
                // The witness still reads back what it wrote.
                await witness.SendRequestAsync(CommandType.Read, (ulong)(1000 + i), 15 << 20, 4096);
                var reply = (await witness.ReadSimpleReplyAsync(4096))!.Value;
                Assert.True(reply.Error == NbdError.None && reply.Data.AsSpan().SequenceEqual(pattern), $"seed {seed}: witness broken at {i}");
            }
        }

        // No connection leaked: only the witness is left once the fuzzers are gone.
        Assert.True(await Poll.UntilAsync(() => server.Server.ConnectionCount <= 1) && server.Server.ConnectionCount == 1, $"seed {seed}: {server.Server.ConnectionCount} connections open");
        Assert.Equal("16777216", (await Tool.RunAsync("nbdinfo", ["--size", server.Uri()])).EnsureSuccess().Stdout.Trim());
    }

    private static async Task RunOneAsync(TestServer server, byte[] conversation, bool halfClose)
    {
        using RawClient client = await RawClient.ConnectAsync(server.SocketPath);
        byte[]? greeting = await client.ReadExactAsync(ServerGreeting.Length);
        Assert.NotNull(greeting);
        try
        {
            await client.SendAsync(conversation);
            if (halfClose)
            {
                client.Socket.Shutdown(SocketShutdown.Send);
            }
        }
        catch (SocketException)
        {
            // The server may close mid-send once it has seen enough.
        }

        byte[] answer = await ReadAllAsync(client.Socket, halfClose ? TimeSpan.FromSeconds(10) : TimeSpan.FromMilliseconds(300));
        CheckHandshakeFraming(answer);
    }

    /// <summary>Everything up to the GO acknowledgement must be well-framed option replies.</summary>
    private static void CheckHandshakeFraming(byte[] answer)
    {
        int position = 0;
        while (answer.Length - position >= OptionReply.HeaderSize)
        {
            ulong magic = BinaryPrimitives.ReadUInt64BigEndian(answer.AsSpan(position));
            if (magic != NbdMagic.OptionReply)
            {
                // Only an NBD_OPT_EXPORT_NAME reply (a mutated option number) may start otherwise: the export size.
                Assert.Equal(16UL << 20, magic);
                return;
            }

            uint option = BinaryPrimitives.ReadUInt32BigEndian(answer.AsSpan(position + 8));
            var type = (OptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(answer.AsSpan(position + 12));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(answer.AsSpan(position + 16));
            Assert.True(Enum.IsDefined(type), $"reply type 0x{(uint)type:x}");
            Assert.True(length <= 8192, $"reply length {length}");
            position += OptionReply.HeaderSize + (int)length;
            if (option == (uint)OptionType.Go && type == OptionReplyType.Ack)
            {
                return;
            }
        }
    }

    private static async Task<byte[]> ReadAllAsync(Socket socket, TimeSpan idle)
    {
        var output = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            using var timeout = new CancellationTokenSource(idle);
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.True(idle < TimeSpan.FromSeconds(1), "the server neither answered nor closed a half-closed connection");
                return output.ToArray();
            }
            catch (SocketException)
            {
                return output.ToArray();
            }

            if (n == 0)
            {
                return output.ToArray();
            }

            output.Write(buffer, 0, n);
        }
    }

    /// <summary>A valid client side of a whole session, after the greeting.</summary>
    private static byte[] BuildConversation(Random random)
    {
        var bytes = new List<byte>();
        void U16(int v) => bytes.AddRange([(byte)(v >> 8), (byte)v]);
        void U32(uint v) => bytes.AddRange([(byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v]);
        void U64(ulong v) { U32((uint)(v >> 32)); U32((uint)v); }
        void Option(OptionType option, byte[] payload) { U64(NbdMagic.IHaveOpt); U32((uint)option); U32((uint)payload.Length); bytes.AddRange(payload); }
        byte[] Name(string name, byte[] tail) => [.. BitConverter.GetBytes(BinaryPrimitives.ReverseEndianness((uint)name.Length)), .. System.Text.Encoding.ASCII.GetBytes(name), .. tail];

        U32((uint)(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes));
        bool structured = random.Next(2) == 0;
        if (random.Next(2) == 0)
        {
            Option(OptionType.List, []);
        }

        if (structured)
        {
            Option(OptionType.StructuredReply, []);
            Option(OptionType.SetMetaContext, Name("mem", [0, 0, 0, 1, 0, 0, 0, 15, .. "base:allocation"u8]));
        }

        Option(OptionType.Info, Name("mem", [0, 1, 0, 3]));
        Option(OptionType.Go, Name("mem", [0, 0]));

        int requests = random.Next(1, 12);
        for (int r = 0; r < requests; r++)
        {
            var type = (CommandType)random.Next(0, 8);
            if (type == CommandType.Disconnect)
            {
                type = CommandType.Flush;
            }

            uint length = type == CommandType.Flush ? 0 : (uint)random.Next(1, 16) * 512;
            ulong offset = type == CommandType.Flush ? 0 : (ulong)random.Next(0, 31) * 512 * 1024;
            U32(NbdMagic.Request);
            U16(0);
            U16((int)type);
            U64((ulong)r);
            U64(offset);
            U32(length);
            if (type == CommandType.Write)
            {
                var payload = new byte[length];
                random.NextBytes(payload);
                bytes.AddRange(payload);
            }
        }

        U32(NbdMagic.Request);
        U16(0);
        U16((int)CommandType.Disconnect);
        U64(999);
        U64(0);
        U32(0);
        return [.. bytes];
    }

    private static byte[] Mutate(Random random, byte[] conversation, out string mutation)
    {
        byte[] bytes = (byte[])conversation.Clone();
        switch (random.Next(6))
        {
            case 0:
                int flips = random.Next(1, 8);
                for (int i = 0; i < flips; i++)
                {
                    bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                }

                mutation = $"{flips} bit flips";
                return bytes;
            case 1:
                // Overwrite an aligned 32-bit word (lengths, counts, offsets, flags) with an extreme value.
                int at = random.Next(bytes.Length / 4) * 4;
                uint value = random.Next(4) switch { 0 => uint.MaxValue, 1 => 0x8000_0000, 2 => 0, _ => (uint)random.Next() };
                BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(at), value);
                mutation = $"word at {at} = 0x{value:x}";
                return bytes;
            case 2:
                int cut = random.Next(bytes.Length);
                mutation = $"truncated at {cut}";
                return bytes[..cut];
            case 3:
                int where = random.Next(bytes.Length);
                var junk = new byte[random.Next(1, 64)];
                random.NextBytes(junk);
                mutation = $"{junk.Length} junk bytes at {where}";
                return [.. bytes[..where], .. junk, .. bytes[where..]];
            case 4:
                // Requests after DISC: the server must ignore them and close.
                var after = new byte[RequestHeader.Size];
                new RequestHeader(NbdMagic.Request, 0, CommandType.Read, 5, 0, 4096).Write(after);
                mutation = "request after DISC";
                return [.. bytes, .. after, .. after];
            default:
                int start = random.Next(bytes.Length);
                int count = Math.Min(random.Next(1, 32), bytes.Length - start);
                random.NextBytes(bytes.AsSpan(start, count));
                mutation = $"{count} random bytes at {start}";
                return bytes;
        }
    }
}
