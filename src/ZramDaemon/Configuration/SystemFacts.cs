using System.Buffers.Binary;
using System.Globalization;
using ZramDaemon.Native;

namespace ZramDaemon.Configuration;

/// <summary>What the configuration depends on besides its sources: RAM, privilege, the environment.</summary>
public sealed record SystemFacts
{
    public const string DefaultConfigPath = "/etc/zramd/zramd.conf";

    /// <summary>MemTotal in MiB; null when /proc/meminfo cannot be read (systemd's ProcSubset=pid hides it): then only
    /// a size that uses <c>ram</c> fails, see <see cref="RamExpression.RamUnknown"/>.</summary>
    public required double? RamMiB { get; init; }

    public required bool IsRoot { get; init; }

    public required IReadOnlyDictionary<string, string> Environment { get; init; }

    /// <summary>Read when neither --config nor ZRAMD_CONFIG names a file, if it exists.</summary>
    public string DefaultConfigFile { get; init; } = DefaultConfigPath;

    /// <summary>A socket-group name's id, or null when there is no such group: <see cref="LookUpGroup"/>, through
    /// NSS; tests give groups of their own here.</summary>
    public Func<string, uint?> FindGroup { get; init; } = LookUpGroup;

    /// <summary>The process's group ids (real, effective and supplementary): without root, a file can only be
    /// given to one of these.</summary>
    public IReadOnlyList<uint> GroupIds { get; init; } = [];

    /// <summary>CAP_CHOWN is in the effective set: a file may be given to any group. Root has it, unless a
    /// bounding set (systemd's CapabilityBoundingSet=) takes it away.</summary>
    public bool CanChownToAnyGroup { get; init; }

    public static SystemFacts Current()
    {
        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry entry in System.Environment.GetEnvironmentVariables())
        {
            environment[(string)entry.Key] = (string?)entry.Value ?? string.Empty;
        }

        return new SystemFacts
        {
            RamMiB = ReadMemTotalMiB(),
            IsRoot = System.Environment.IsPrivilegedProcess,
            Environment = environment,
            GroupIds = ReadGroupIds(out bool canChown),
            CanChownToAnyGroup = canChown,
        };
    }

    /// <summary>The Gid: and Groups: lines of /proc/self/status, and whether CapEff: has CAP_CHOWN (bit 0).</summary>
    private static List<uint> ReadGroupIds(out bool canChown)
    {
        var ids = new List<uint>();
        canChown = false;
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal))
            {
                canChown = ulong.TryParse(line["CapEff:".Length..].Trim(), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong caps)
                    && (caps & 1) != 0;
            }
            else if (line.StartsWith("Gid:", StringComparison.Ordinal) || line.StartsWith("Groups:", StringComparison.Ordinal))
            {
                foreach (string word in line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
                {
                    if (uint.TryParse(word, NumberStyles.None, CultureInfo.InvariantCulture, out uint id))
                    {
                        ids.Add(id);
                    }
                }
            }
        }

        return ids;
    }

    /// <summary>getgrnam_r: the group database as NSS configures it (nsswitch.conf: files, LDAP, sssd, systemd), the
    /// one chown(1) and getent read, so that a group only in LDAP is found. Null when there is no such group; an
    /// IOException when the lookup itself fails (an unreachable directory server, say).</summary>
    public static uint? LookUpGroup(string name)
    {
        Span<byte> group = stackalloc byte[Interop.Libc.GroupStructSize];
        // The entry's strings (name, password, member list) go in the buffer: a group with many members needs more.
        for (int size = 1024; ; size *= 2)
        {
            byte[] buffer = new byte[size];
            int error = Interop.Libc.GetGroupByName(name, group, buffer, (nuint)buffer.Length, out nint result);
            if (error == Interop.Libc.ERange && size < 1 << 24)
            {
                continue;
            }

            if (error != 0)
            {
                throw new IOException($"looking up group '{name}': {Interop.Libc.Describe(error)}");
            }

            return result == 0 ? null : BinaryPrimitives.ReadUInt32LittleEndian(group[Interop.Libc.GroupIdOffset..]);
        }
    }

    /// <summary>MemTotal from /proc/meminfo in MiB, as zram-generator reads it; null when the file cannot be read or
    /// has no MemTotal line. Read at every start and by every verb, most of which never need it: a failure here must
    /// not stop them.</summary>
    public static double? ReadMemTotalMiB()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal))
                {
                    string kib = line["MemTotal:".Length..].Trim();
                    if (kib.EndsWith(" kB", StringComparison.Ordinal))
                    {
                        kib = kib[..^3];
                    }

                    return long.TryParse(kib, NumberStyles.None, CultureInfo.InvariantCulture, out long value) ? value / 1024.0 : null;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    public string? Get(string name) => Environment.TryGetValue(name, out string? value) && value.Length > 0 ? value : null;
}
