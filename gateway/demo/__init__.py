"""The local demo: a stand-in Whisper backend and the pieces that run the whole chain on loopback.

``gateway.demo.backend`` is an OpenAI-compatible transcription server on PocketSphinx (offline,
English), used by ``ohttp-gateway demo`` and by the end-to-end tests in place of a real Whisper
container. ``gateway/demo/audio/`` holds the bundled speech sample (see scripts/make-sample-audio).
"""
