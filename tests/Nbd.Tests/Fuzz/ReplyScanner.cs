using System.Buffers.Binary;
using Nbd.Devices;
using Nbd.Protocol;

namespace Nbd.Tests.Fuzz;

/// <summary>
/// Splits what the server sends in the transmission phase (simple replies only: the fuzz target's handshake
/// does not negotiate structured replies) into (cookie, error) pairs, skipping the first
/// <paramref name="skip"/> bytes (greeting and option replies) and the data of successful reads, whose
/// lengths <paramref name="readLengths"/> gives by cookie. With a negative <paramref name="skip"/> it only
/// swallows bytes. A reply that does not start with the simple reply magic is a finding.
/// </summary>
public sealed class ReplyScanner(long skip, IReadOnlyDictionary<ulong, uint>? readLengths)
{
    private const int HeaderSize = 16;

    private readonly byte[] _header = new byte[HeaderSize];
    private long _skip = skip;
    private int _have;

    public List<(ulong Cookie, NbdError Error)> Replies { get; } = [];

    public string? Malformed { get; private set; }

    public void Consume(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0 && _skip >= 0 && Malformed is null)
        {
            if (_skip > 0)
            {
                int n = (int)Math.Min(_skip, data.Length);
                data = data[n..];
                _skip -= n;
                continue;
            }

            int take = Math.Min(HeaderSize - _have, data.Length);
            data[..take].CopyTo(_header.AsSpan(_have));
            data = data[take..];
            _have += take;
            if (_have < HeaderSize)
            {
                return;
            }

            _have = 0;
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(_header);
            if (magic != NbdMagic.SimpleReply)
            {
                Malformed = $"reply {Replies.Count} has magic 0x{magic:x8}";
                return;
            }

            var error = (NbdError)BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(4));
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(8));
            Replies.Add((cookie, error));
            if (error == NbdError.None && readLengths is not null && readLengths.TryGetValue(cookie, out uint length))
            {
                _skip = length;
            }
        }
    }
}
