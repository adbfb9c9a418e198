/// Display names of the venues tickplant knows, by ISO 10383 MIC. The edge shows these as `exchange`.
public enum Venue {
    public static let consolidated = "CONS"

    public static func displayName(mic: String) -> String {
        switch mic {
        case "XNAS": "NASDAQ"
        case "XNYS": "NYSE"
        case "ARCX": "NYSE ARCA"
        case "BATS": "CBOE BZX"
        case "IEXG": "IEX"
        case "CONS": "CONSOLIDATED"
        default: mic
        }
    }
}
