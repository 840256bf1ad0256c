using System.Reflection;

namespace ZramDaemon.Vm.Tests.Harness;

/// <summary>Where things are in the checkout the tests were built from.</summary>
public static class Repository
{
    public static string Root { get; } = FindRoot();

    public static string VmScripts => Path.Combine(Root, "scripts", "vm");

    /// <summary>The build configuration of this test assembly (Release under scripts/test.sh).</summary>
    public static string Configuration { get; } =
        typeof(Repository).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";

    /// <summary>zramd.dll as built by the solution build (the project reference makes sure it is built).</summary>
    public static string ZramdDll => Path.Combine(Root, "src", "ZramDaemon", "bin", Configuration, "net10.0", "zramd.dll");

    /// <summary>The native launcher the build puts beside zramd.dll (needs the .NET runtime installed).</summary>
    public static string ZramdApphost => Path.Combine(Path.GetDirectoryName(ZramdDll)!, "zramd");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Zram.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no Zram.sln above {AppContext.BaseDirectory}");
    }
}
