-- result is Graph's Int32 exit code: HRESULT-style failures (0x80070005 is -2147024891) are negative.
ALTER TABLE events.elevations DROP CONSTRAINT IF EXISTS elevations_result_check;
