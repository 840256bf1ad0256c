namespace ZramDaemon.Tests.Repository;

/// <summary>The checkout the tests were built from: the first directory above the test binaries with Zram.sln.</summary>
public static class RepositoryRoot
{
    public static string Path { get; } = Find();

    private static string Find()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir, "Zram.sln")))
        {
            dir = System.IO.Path.GetDirectoryName(dir);
        }

        return dir ?? throw new InvalidOperationException("Zram.sln not found above " + AppContext.BaseDirectory);
    }
}
