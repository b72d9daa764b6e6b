package kraftwerk.javaclient;

/**
 * The `Admin` scenario's entry point: `java ... kraftwerk.javaclient.Admin BOOTSTRAP`.
 * The steps live in {@link AdminScenario}, whose file can import the
 * client's own `Admin` interface without a name clash.
 */
public final class Admin {
    private Admin() {}

    public static void main(String[] argv) {
        AdminScenario.main(argv);
    }
}
