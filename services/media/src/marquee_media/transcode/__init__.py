"""HLS transcode sessions: ffprobe, an ffmpeg per session, and the session cache (M-5)."""
