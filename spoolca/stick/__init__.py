"""The stick: requests in from a hostile USB stick (ingest), which stick it is (medium),
what goes back out on it, composed and signed (composing, exportrequests for the media
unit that holds no key), written by descriptor (export), and the report it carries."""
