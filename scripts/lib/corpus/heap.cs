#:property PublishAot=false
#:property Nullable=enable
// Builds a real .NET heap of about N MiB of resident anonymous memory, then prints 'ready' and waits.
// The heap holds what .NET services hold: XML documentation trees (XDocument), strings, dictionaries,
// lists of records and arrays of numbers, from files installed on this machine. Usage: dotnet run heap.cs -- MIB
using System.Text.RegularExpressions;
using System.Xml.Linq;

int target = int.Parse(args[0]);
var docs = new List<XDocument>();
var lines = new List<LineRecord>();
var counts = new Dictionary<string, int>();
var numbers = new List<double>();
var blobs = new List<byte[]>();
foreach (string file in Files(["/usr/share/dotnet", "/usr/lib", "/usr/share"]))
{
    // Garbage counts in RSS until a collection returns it: stop only when the live heap is big enough.
    if (RssAnonMiB() >= target)
    {
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        if (RssAnonMiB() >= target)
        {
            break;
        }
    }

    byte[] data;
    try
    {
        if (new FileInfo(file).Length > 4 << 20) continue;
        data = File.ReadAllBytes(file);
    }
    catch (Exception) { continue; }

    if (file.EndsWith(".xml", StringComparison.Ordinal))
    {
        try { docs.Add(XDocument.Parse(System.Text.Encoding.UTF8.GetString(data))); } catch (Exception) { }
    }

    if (Array.IndexOf(data, (byte)0) >= 0)
    {
        blobs.Add(data);
        continue;
    }

    string text = System.Text.Encoding.UTF8.GetString(data);
    int n = 0;
    foreach (string line in text.Split('\n'))
    {
        string[] words = Regex.Split(line, @"\s+");
        lines.Add(new LineRecord(file, n, line, words, (n * 2654435761L % 1000003) / 1000003.0));
        foreach (string w in words) { counts[w] = counts.GetValueOrDefault(w) + 1; }
        numbers.Add(n++ * 0.5);
        numbers.Add(line.Length);
    }
}

Console.WriteLine($"ready {RssAnonMiB()}");
Console.In.ReadToEnd(); // hold the heap until the caller closes our stdin
GC.KeepAlive(docs); GC.KeepAlive(lines); GC.KeepAlive(counts); GC.KeepAlive(numbers); GC.KeepAlive(blobs);

static int RssAnonMiB()
{
    foreach (string line in File.ReadLines("/proc/self/status"))
    {
        if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
        {
            return int.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024;
        }
    }

    return 0;
}

static IEnumerable<string> Files(string[] roots)
{
    while (true)
    {
        foreach (string root in roots)
        {
            IEnumerable<string> all;
            try { all = Directory.EnumerateFiles(root, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true }); }
            catch (Exception) { continue; }
            foreach (string f in all) yield return f;
        }
    }
}

internal sealed record LineRecord(string File, int Number, string Text, string[] Words, double Weight);
