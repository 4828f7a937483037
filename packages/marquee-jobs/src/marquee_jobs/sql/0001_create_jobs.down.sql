DROP TABLE marquee_job_keys;
DROP TABLE marquee_jobs;
