-- Device activity for risk scoring (GetElevationStats): a device's events in a time window.
CREATE INDEX elevations_by_device ON events.elevations (tenant_id, device_id, event_date_time);
