DROP TABLE marquee_fencing;
